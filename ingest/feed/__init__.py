"""The open MQTT feed for third-party developers: committed readings, device status and zone summaries.

    payloads   what the feed publishes: topics, SenML packs, status and summary messages (pure)
    publisher  ``OpenFeed``: hands committed readings to a thread of its own that publishes them
    status     ``StatusPublisher``: device health and zone summaries, from one worker at a time
    asyncapi   the AsyncAPI document of the feed (``ioc feed asyncapi``, docs/asyncapi.yaml)

The ingest worker needs only ``OpenFeed`` and its ``FeedConfig``, exported here.
"""

from ingest.feed.publisher import FeedConfig, OpenFeed

__all__ = ["FeedConfig", "OpenFeed"]
