"""Data files shipped with the platform (default district outlines), read with importlib.resources."""
