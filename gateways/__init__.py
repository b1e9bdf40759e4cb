"""Thin adapters to external systems: ChirpStack, the MQTT broker, PostgreSQL, Grafana."""
