"""Broker settings: unset means the API stores credentials only; bad values stop start-up with one message."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioc_core.errors import ConfigError
from ioc_core.settings import BrokerSettings, load


def test_unset_means_not_managed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("IOC_BROKER_CONFIG_DIR", "IOC_BROKER_PID_FILE", "IOC_BROKER_PUBLIC_URL", "IOC_BROKER_ADMIN_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load(BrokerSettings)
    assert settings.config_dir is None and settings.pid_file is None
    assert settings.public_url == "mqtt://127.0.0.1:1884"
    assert settings.credentials_per_developer == 5
    assert settings.admin_url is None


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IOC_BROKER_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("IOC_BROKER_PID_FILE", str(tmp_path / "mosquitto.pid"))
    monkeypatch.setenv("IOC_BROKER_PUBLIC_URL", "mqtts://iot.danang.gov.vn:8883")
    settings = load(BrokerSettings)
    assert settings.config_dir == tmp_path and settings.pid_file == tmp_path / "mosquitto.pid"
    assert settings.public_url == "mqtts://iot.danang.gov.vn:8883"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("IOC_BROKER_PUBLIC_URL", "https://iot.danang.gov.vn", "IOC_BROKER_PUBLIC_URL: the URL must start with"),
        ("IOC_BROKER_PUBLIC_URL", "mqtts://dev:secret@iot.danang.gov.vn:8883", "must not hold a user name"),
        ("IOC_BROKER_CONFIG_DIR", "/nonexistent/broker", "IOC_BROKER_CONFIG_DIR: /nonexistent/broker is not a folder"),
        ("IOC_BROKER_CREDENTIALS_PER_DEVELOPER", "0", "IOC_BROKER_CREDENTIALS_PER_DEVELOPER"),
        ("IOC_BROKER_ADMIN_URL", "mqtt://127.0.0.1:1885", "needs the ioc-api account"),
        ("IOC_BROKER_ADMIN_URL", "http://ioc-api:x@127.0.0.1:1885", "IOC_BROKER_ADMIN_URL: the URL must start with"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=fragment) as caught:
        load(BrokerSettings)
    assert "secret" not in str(caught.value)
