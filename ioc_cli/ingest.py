"""``ioc ingest``: run an ingest worker until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from gateways.mqtt import MqttBroadcaster
from ingest.codecs.js_runtime import JsLimits
from ingest.codecs.library import CodecLibrary
from ingest.feed import FeedConfig, OpenFeed
from ingest.pipeline import EdgeLimits
from ingest.processor import BatchProcessor
from ingest.worker import IngestWorker, WorkerConfig
from ioc_cli.environment import environment
from ioc_cli.logs import setup_logging
from ioc_core.settings import DatabaseSettings, FeedSettings, IngestSettings, MqttSettings, load

__all__ = ["build_feed", "build_worker", "register", "stop_on_signals"]

log = logging.getLogger("ioc.ingest")


def build_feed(feed: FeedSettings, ingest: IngestSettings, database: DatabaseSettings,
               mqtt: MqttSettings) -> OpenFeed | None:
    """The open feed of one worker, or None when IOC_FEED_ENABLED is off."""
    if not feed.enabled:
        return None
    client_id = feed.client_id or f"{ingest.client_id[:59]}-feed"
    url = feed.broker_url(mqtt)
    if feed.url is None and url.username == "ioc-ingest":
        # The two-broker layout `ioc broker config` writes: ioc-ingest may not publish on the internal broker.
        log.warning("IOC_FEED_URL is not set, so the open feed would go to the internal broker, where "
                    "ioc-ingest may not publish: set it to the public broker's service listener "
                    "(mqtt://ioc-feed:<password>@host:1885) or IOC_FEED_ENABLED=false")
    log.info("open feed: publishing to %s as %s", url, client_id)
    broadcaster = MqttBroadcaster(url, client_id=client_id, ca_file=feed.broker_ca_file(mqtt))
    config = FeedConfig(prefix=feed.prefix, queue_size=feed.queue, qos=feed.qos,
                        status_interval_s=feed.status_interval_s)
    return OpenFeed(database.dsn, broadcaster, config)


def build_worker(
    ingest: IngestSettings, database: DatabaseSettings, mqtt: MqttSettings, *, name: str | None = None,
    feed: FeedSettings | None = None,
) -> IngestWorker:
    """An ingest worker; with ``feed`` settings it also publishes the open feed (unless they turn it off)."""
    codecs = CodecLibrary.discover(
        js_dir=ingest.codec_dir,
        js_limits=JsLimits(time_limit_ms=ingest.js_time_limit_ms, memory_limit_mb=ingest.js_memory_limit_mb),
    )
    config = WorkerConfig(
        name=name or ingest.client_id,
        client_id=ingest.client_id,
        topic_filter=ingest.topic,
        share_group=ingest.share_group or None,
        batch_size=ingest.batch_size,
        batch_age_s=ingest.batch_age_ms / 1000.0,
        receive_maximum=ingest.receive_maximum,
        session_expiry_s=ingest.session_expiry_s,
        stats_interval_s=ingest.stats_interval_s,
        crash_guard=ingest.crash_guard,
    )
    limits = EdgeLimits(
        max_event_bytes=ingest.max_event_bytes,
        keep_bytes=ingest.dead_letter_keep_bytes,
        future_s=ingest.future_s,
        past_s=ingest.past_days * 86400.0,
    )
    open_feed = build_feed(feed, ingest, database, mqtt) if feed is not None else None
    return IngestWorker(config, mqtt.url, BatchProcessor(database.dsn, codecs, limits=limits), open_feed)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and Ctrl-C ask for a drain: finish and ack what has arrived, then exit."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("second signal: exiting now; unacked messages will be redelivered")
            raise SystemExit(1)
        log.info("%s received: draining", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def register(app: typer.Typer) -> None:
    @app.command("ingest", epilog=environment(IngestSettings, DatabaseSettings, MqttSettings, FeedSettings))
    def ingest_cmd(
        codec_dir: Annotated[
            str | None, typer.Option(help="Folder of JavaScript codecs (overrides IOC_CODEC_DIR).")
        ] = None,
    ) -> None:
        """Run an ingest worker: ChirpStack events from MQTT into the database.

        Subscribes with QoS 1 to $share/IOC_INGEST_SHARE_GROUP/IOC_INGEST_TOPIC on IOC_MQTT_URL (start more
        workers with different IOC_INGEST_CLIENT_ID values to split the load), writes batches of up to
        IOC_INGEST_BATCH_SIZE messages (or older than IOC_INGEST_BATCH_AGE_MS) to IOC_DATABASE_URL, and
        acknowledges each message only after its batch is committed. SIGTERM drains and exits.

        It also publishes the open feed (IOC_FEED_ENABLED, default on): each committed reading of a public
        device as a retained SenML pack on IOC_FEED_PREFIX/{zone}/{kind}/{dev_eui} (default prefix ioc/v1),
        device status on .../{zone}/_status/{dev_eui} and zone summaries on .../{zone}/_summary every
        IOC_FEED_STATUS_INTERVAL_S, through IOC_FEED_URL (default IOC_MQTT_URL).
        """
        settings = load(IngestSettings)
        if codec_dir:
            settings = settings.model_copy(update={"codec_dir": codec_dir})
        setup_logging(settings.log_level)
        worker = build_worker(settings, load(DatabaseSettings), load(MqttSettings), feed=load(FeedSettings))
        stop = threading.Event()
        stop_on_signals(stop)
        worker.run(stop)
