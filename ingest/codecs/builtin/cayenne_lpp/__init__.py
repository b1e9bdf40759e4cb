"""Cayenne LPP codec folder."""
