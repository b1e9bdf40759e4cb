"""Request and response models, split by use."""
