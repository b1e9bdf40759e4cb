"""Grafana boards and alert rules as Python: the JSON they generate, provisioning files and push."""
