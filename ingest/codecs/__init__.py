"""Payload codecs: a library of built-in codec folders and operator-supplied JavaScript codecs."""
