"""Street light codec folder (IOC device models)."""
