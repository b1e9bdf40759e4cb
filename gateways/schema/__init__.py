"""SQL migration scripts (data files, read with importlib.resources)."""
