"""ChirpStack v4: the MQTT integration event contract (moved here in the next commit) and the gRPC adapter."""
