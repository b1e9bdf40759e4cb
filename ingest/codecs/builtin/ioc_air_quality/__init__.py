"""Air quality codec folder (IOC device models)."""
