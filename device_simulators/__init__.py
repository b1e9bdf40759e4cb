"""A simulated Da Nang sensor fleet that produces real payload bytes and ChirpStack v4 MQTT events."""
