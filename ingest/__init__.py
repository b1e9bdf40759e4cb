"""The ingest pipeline: ChirpStack events from MQTT become decoded, validated rows in the database."""

__all__: list[str] = []
