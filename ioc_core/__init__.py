"""Shared core of the IOC platform: settings, domain types, the metric vocabulary and the error roots."""
