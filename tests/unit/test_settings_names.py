"""Settings field names say what, their class says where: ``IngestSettings.batch_size`` is read from
``IOC_INGEST_BATCH_SIZE``. The variables themselves are the operators' contract and must not change."""

from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings

import ioc_core.settings as settings_module
from ioc_api.app import create_app
from ioc_core.errors import ConfigError
from ioc_core.settings import DatabaseSettings, IngestSettings, MqttSettings, MqttUrl, load, variable

SETTINGS = [getattr(settings_module, name) for name in settings_module.__all__
            if name.endswith("Settings") and isinstance(getattr(settings_module, name), type)]


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
def test_no_field_repeats_its_area(cls: type[BaseSettings]) -> None:
    area = str(cls.model_config["env_prefix"]).removeprefix("IOC_").lower()
    assert area, f"{cls.__name__} reads IOC_ variables without naming its area"
    stutter = [name for name in cls.model_fields if name.startswith(area)]
    assert stutter == []


def test_the_variables_are_the_documented_ones() -> None:
    assert [variable(IngestSettings, n) for n in ("batch_size", "client_id", "codec_dir", "js_workers",
                                                 "log_level")] == [
        "IOC_INGEST_BATCH_SIZE", "IOC_INGEST_CLIENT_ID", "IOC_CODEC_DIR", "IOC_JS_WORKERS", "IOC_LOG_LEVEL"]
    assert variable(DatabaseSettings, "url") == "IOC_DATABASE_URL"
    assert variable(MqttSettings, "ca_file") == "IOC_MQTT_CA_FILE"


def test_variables_are_read_under_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_INGEST_BATCH_SIZE", "123")
    monkeypatch.setenv("IOC_JS_WORKERS", "3")
    monkeypatch.setenv("IOC_MQTT_URL", "mqtts://ioc-ingest:secret@broker.example:8883")
    ingest, mqtt = load(IngestSettings), load(MqttSettings)
    assert (ingest.batch_size, ingest.js_workers) == (123, 3)
    assert mqtt.url == MqttUrl.parse("mqtts://ioc-ingest:secret@broker.example:8883")
    # Code and tests may pass an aliased field by its name as well.
    assert IngestSettings(js_workers=4).js_workers == 4


def test_an_aliased_variable_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_JS_WORKERS", "0")
    with pytest.raises(ConfigError, match=r"IOC_JS_WORKERS: Input should be greater than or equal to 1"):
        load(IngestSettings)


def test_the_api_built_from_the_environment_reports_a_bad_value_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_API_POOL_SIZE", "0")
    with pytest.raises(ConfigError) as caught:
        create_app(load(DatabaseSettings))
    assert str(caught.value) == "bad configuration:\n  IOC_API_POOL_SIZE: Input should be greater than or equal to 1"
