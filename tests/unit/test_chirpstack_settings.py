"""ChirpStack settings: complete or refused at start-up with a message naming what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ioc_core.errors import ConfigError
from ioc_core.settings import ChirpStackSettings, load

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "chirpstack" / "profiles.yaml"


def test_unset_means_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOC_CHIRPSTACK_API", raising=False)
    settings = load(ChirpStackSettings)
    assert not settings.enabled and settings.target_for("ioc-wl100") is None


def test_the_shipped_profiles_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_CHIRPSTACK_API", "chirpstack:8080")
    monkeypatch.setenv("IOC_CHIRPSTACK_TOKEN", "t")
    monkeypatch.setenv("IOC_CHIRPSTACK_PROFILES_FILE", str(DEPLOY))
    settings = load(ChirpStackSettings)
    wl, other = settings.target_for("ioc-wl100"), settings.target_for("ioc-th100")
    assert wl is not None and str(wl.device_profile_id).endswith("a1")
    assert other is not None and str(other.device_profile_id).endswith("ff")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "IOC_CHIRPSTACK_TOKEN is required"),
        ({"IOC_CHIRPSTACK_TOKEN": "t"}, "must map device models"),
        ({"IOC_CHIRPSTACK_TOKEN": "t", "IOC_CHIRPSTACK_PROFILES": '{"*": {"application_id": "x"}}'},
         "IOC_CHIRPSTACK_PROFILES_*_APPLICATION_ID"),
        ({"IOC_CHIRPSTACK_TOKEN": "t", "IOC_CHIRPSTACK_PROFILES_FILE": "/nonexistent.yaml"}, "cannot read"),
        ({"IOC_CHIRPSTACK_TOKEN": "t", "IOC_CHIRPSTACK_CALLS_PER_S": "0"}, "IOC_CHIRPSTACK_CALLS_PER_S"),
    ],
)
def test_incomplete_settings_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                         message: str) -> None:
    monkeypatch.setenv("IOC_CHIRPSTACK_API", "chirpstack:8080")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        load(ChirpStackSettings)
