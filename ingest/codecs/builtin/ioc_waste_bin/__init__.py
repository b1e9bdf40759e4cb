"""Waste bin codec folder (IOC device models)."""
