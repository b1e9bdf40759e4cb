"""Payload codecs: a registry of built-in codec folders and operator-supplied JavaScript codecs."""
