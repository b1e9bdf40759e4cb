"""Parking codec folder (IOC device models)."""
