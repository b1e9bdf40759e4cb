"""IOC_FEED_* settings: defaults that follow the ingest's broker, and refusals with the variable named."""

from __future__ import annotations

import pytest

from ioc_cli.ingest import build_feed
from ioc_core.errors import ConfigError
from ioc_core.settings import DatabaseSettings, FeedSettings, IngestSettings, MqttSettings, load


def test_defaults_follow_the_ingest(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IOC_FEED_URL", "IOC_FEED_PREFIX", "IOC_FEED_ENABLED", "IOC_FEED_QOS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IOC_MQTT_URL", "mqtt://ingest:secret@broker.local:1884")
    feed, mqtt = load(FeedSettings), load(MqttSettings)
    assert feed.enabled and feed.prefix == "ioc/v1" and feed.qos == 0
    url = feed.broker_url(mqtt)
    assert (url.host, url.port, url.username) == ("broker.local", 1884, "ingest")
    assert feed.status_interval_s == 30.0


def test_a_separate_feed_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_FEED_URL", "mqtts://feed@public.example.org")
    url = load(FeedSettings).broker_url(MqttSettings())
    assert (url.host, url.port, url.tls) == ("public.example.org", 8883, True)


@pytest.mark.parametrize(("name", "value"), [
    ("IOC_FEED_URL", "http://broker"),
    ("IOC_FEED_PREFIX", "ioc/#"),
    ("IOC_FEED_PREFIX", "/ioc/v1"),
    ("IOC_FEED_QOS", "2"),
    ("IOC_FEED_QUEUE", "0"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load(FeedSettings)


def test_turned_off_means_no_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_FEED_ENABLED", "false")
    assert build_feed(load(FeedSettings), IngestSettings(), DatabaseSettings(), MqttSettings()) is None


def test_the_feed_gets_a_client_id_of_its_own() -> None:
    feed = build_feed(FeedSettings(), IngestSettings(client_id="ioc-ingest-host-1"), DatabaseSettings(),
                      MqttSettings())
    assert feed is not None
    assert feed._broadcaster._client._client_id == b"ioc-ingest-host-1-feed"


def test_a_feed_left_on_the_internal_broker_is_pointed_out(caplog: pytest.LogCaptureFixture) -> None:
    """With two brokers the ingest's account may not publish where it reads: say so at start-up."""
    internal = MqttSettings(url="mqtt://ioc-ingest:secret@127.0.0.1:1883")
    with caplog.at_level("WARNING", logger="ioc.ingest"):
        build_feed(FeedSettings(), IngestSettings(), DatabaseSettings(), internal)
    assert "IOC_FEED_URL is not set" in caplog.text and "secret" not in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="ioc.ingest"):
        build_feed(FeedSettings(url="mqtt://ioc-feed:x@127.0.0.1:1885"), IngestSettings(), DatabaseSettings(),
                   internal)
    assert "IOC_FEED_URL is not set" not in caplog.text
