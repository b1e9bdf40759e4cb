"""Rain gauge codec folder (IOC device models)."""
