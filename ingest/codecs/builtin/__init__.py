"""Built-in codecs: one folder per codec with manifest.yaml, codec.py and examples.yaml (see library)."""
