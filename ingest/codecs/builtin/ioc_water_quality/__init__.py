"""Water quality codec folder (IOC device models)."""
