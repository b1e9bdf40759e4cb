"""Water level codec folder (IOC device models)."""
