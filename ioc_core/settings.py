"""Settings read from ``IOC_`` environment variables; built in ``main()`` and passed down, never at import.

Every settings class of the platform is here, with ``load()`` that turns a bad value into one line naming its
variable: one module (~540 lines, most of it field descriptions that ``--help`` shows) so the variables an
operator may set are read in one place, and ``ioc_cli.environment`` can list any command's.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import unquote, urlsplit
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ioc_core.contacts import webhook_secret_key
from ioc_core.errors import ConfigError

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DEFAULT_MQTT_URL",
    "DEFAULT_PUBLIC_MQTT_URL",
    "ApiClientSettings",
    "ApiSettings",
    "BrokerSettings",
    "CapSettings",
    "ChirpStackSettings",
    "ChirpStackTarget",
    "DatabaseSettings",
    "FeedSettings",
    "GrafanaSettings",
    "IngestSettings",
    "MqttSettings",
    "MqttUrl",
    "NotifySettings",
    "OpenDataSettings",
    "OperationsSettings",
    "SopSettings",
    "load",
    "variable",
]

DEFAULT_DATABASE_URL = "postgresql://ioc@127.0.0.1:5432/ioc"
DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PUBLIC_MQTT_URL = "mqtt://127.0.0.1:1884"  # the public broker's developer listener


@dataclass(frozen=True, slots=True)
class MqttUrl:
    """A broker address parsed from ``mqtt://[user:password@]host:port`` (``mqtts://`` for TLS)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: SecretStr | None = None

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ConfigError(
                f"IOC_MQTT_URL must start with mqtt:// or mqtts://, got {_redact(url)!r}"
            )
        if not parts.hostname:
            raise ConfigError(f"IOC_MQTT_URL has no host: {_redact(url)!r}")
        try:
            port = parts.port
        except ValueError as err:
            raise ConfigError(f"IOC_MQTT_URL has a bad port: {_redact(url)!r}") from err
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=SecretStr(unquote(parts.password)) if parts.password else None,
        )

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


_S = TypeVar("_S", bound=BaseSettings)


class _Base(BaseSettings):
    """Each settings class reads the variables ``IOC_<AREA>_<FIELD>``: its own ``env_prefix`` names the area, so
    field names do not repeat it (``IngestSettings.batch_size`` is ``IOC_INGEST_BATCH_SIZE``)."""

    model_config = SettingsConfigDict(env_prefix="IOC_", extra="forbid")


class DatabaseSettings(_Base):
    model_config = SettingsConfigDict(env_prefix="IOC_DATABASE_", extra="forbid")

    url: SecretStr = Field(
        default=SecretStr(DEFAULT_DATABASE_URL),
        description="libpq URL of the platform database (IOC_DATABASE_URL)",
    )

    @field_validator("url")
    @classmethod
    def _libpq_url(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a libpq URL starting with postgresql://")
        return value

    @property
    def dsn(self) -> str:
        return self.url.get_secret_value()


class MqttSettings(_Base):
    model_config = SettingsConfigDict(env_prefix="IOC_MQTT_", extra="forbid")

    url: Annotated[MqttUrl, NoDecode] = Field(default_factory=lambda: MqttUrl.parse(DEFAULT_MQTT_URL),
                                              description="broker URL (IOC_MQTT_URL)")
    ca_file: Path | None = Field(default=None, description="CA bundle for mqtts:// (IOC_MQTT_CA_FILE)")

    @field_validator("url", mode="before")
    @classmethod
    def _parses(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return MqttUrl.parse(value)
        except ConfigError as err:
            raise ValueError(str(err)) from err


class IngestSettings(_Base):
    """Knobs of ``ioc ingest``; the defaults suit one worker on a small machine."""

    # The codec and log variables are not ingest-only (``ioc api`` reads the codecs too), so they keep their
    # own names through aliases; populate_by_name lets code and tests pass them by field name.
    model_config = SettingsConfigDict(env_prefix="IOC_INGEST_", extra="forbid", populate_by_name=True)


    client_id: str = Field(
        default_factory=lambda: f"ioc-ingest-{socket.gethostname()}"[:64],
        description="MQTT client id; keep it stable so the broker keeps the session across restarts",
    )
    share_group: str = Field(
        default="ioc-ingest",
        pattern=r"^[^/+#$]*$",
        description="shared-subscription group; empty subscribes without sharing (one worker)",
    )
    topic: str = "application/+/device/+/event/+"
    batch_size: int = Field(default=5000, ge=1, le=50_000)
    batch_age_ms: int = Field(default=200, ge=1, le=60_000)
    receive_maximum: int = Field(default=20_000, ge=10, le=65_535)
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0)
    stats_interval_s: float = Field(default=10.0, gt=0)
    codec_dir: Path | None = Field(default=None, validation_alias="IOC_CODEC_DIR",
                                   description="folder of JavaScript codecs (IOC_CODEC_DIR)")
    js_time_limit_ms: int = Field(default=100, ge=1, le=10_000, validation_alias="IOC_JS_TIME_LIMIT_MS")
    js_memory_limit_mb: int = Field(default=32, ge=1, le=1024, validation_alias="IOC_JS_MEMORY_LIMIT_MB")
    js_workers: int = Field(default=2, ge=1, le=64, validation_alias="IOC_JS_WORKERS",
                            description="JavaScript decoder processes (IOC_JS_WORKERS)")
    js_kill_grace_ms: int = Field(
        default=150, ge=10, le=60_000, validation_alias="IOC_JS_KILL_GRACE_MS",
        description="a decode still running this long after the time limit has its worker killed "
        "(IOC_JS_KILL_GRACE_MS)",
    )
    js_breaker_failures: int = Field(
        default=5, ge=1, le=10_000, validation_alias="IOC_JS_BREAKER_FAILURES",
        description="timeouts, crashes or memory exhaustions within the window that disable a JavaScript codec "
        "(IOC_JS_BREAKER_FAILURES)",
    )
    js_breaker_window_s: float = Field(default=60.0, gt=0, le=86_400, validation_alias="IOC_JS_BREAKER_WINDOW_S",
                                       description="(IOC_JS_BREAKER_WINDOW_S)")
    js_breaker_cooldown_s: float = Field(
        default=300.0, gt=0, le=86_400, validation_alias="IOC_JS_BREAKER_COOLDOWN_S",
        description="how long a disabled codec's uplinks go straight to dead letters (IOC_JS_BREAKER_COOLDOWN_S)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", validation_alias="IOC_LOG_LEVEL")
    # Hostile input (docs/ingest-hardening.md).
    max_event_bytes: int = Field(
        default=128 * 1024, ge=4096, le=64 * 1024 * 1024,
        description="larger events are dead letters that keep their first IOC_INGEST_DEAD_LETTER_KEEP_BYTES; "
        "the largest real ChirpStack uplink (242-byte payload, decoded object, tens of gateways) is a few tens of KiB")
    dead_letter_keep_bytes: int = Field(
        default=4096, ge=64, le=1024 * 1024,
        description="bytes kept of an event larger than IOC_INGEST_MAX_EVENT_BYTES")
    future_s: float = Field(
        default=600.0, ge=0, description="an event time further ahead of the receive time is not trusted: the "
        "row takes the receive time and keeps the claimed time in event_time")
    past_days: float = Field(
        default=730.0, gt=0, description="nor is an event time further behind the receive time (default: the "
        "raw data's retention)")
    crash_guard: bool = Field(
        default=True, description="after a run that died holding messages, take the redelivered ones alone "
        "and dead-letter the one the worker dies on")


def variable(cls: type[BaseSettings], field: str) -> str:
    """The environment variable a settings field is read from: its alias, or the class prefix and its name."""
    info = cls.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias.upper()
    if field.upper().startswith("IOC_"):
        return field.upper()  # pydantic reports an aliased field by its alias
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def load(cls: type[_S]) -> _S:
    """Build a settings object, turning pydantic's validation errors into one clear ConfigError."""
    try:
        return cls()
    except ValidationError as err:
        lines = []
        for problem in err.errors():
            message = str(problem["msg"]).removeprefix("Value error, ")
            if problem["loc"]:
                name = "_".join([variable(cls, str(problem["loc"][0])), *(str(p).upper() for p in problem["loc"][1:])])
                message = f"{name}: {message}"
            lines.append(message)
        raise ConfigError("bad configuration:\n  " + "\n  ".join(lines)) from err


class ApiSettings(_Base):
    """Knobs of ``ioc api``; loopback by default, so exposing the API is a deliberate choice."""

    model_config = SettingsConfigDict(env_prefix="IOC_API_", extra="forbid")


    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65_535)
    pool_size: int = Field(default=10, ge=1, le=200)
    timezone: str = Field(default="Asia/Ho_Chi_Minh", description="the city's time zone; day buckets start at "
                              "its midnight (IOC_API_TIMEZONE)")
    body_max_bytes: int = Field(default=64 * 1024, ge=1024, le=64 * 1024 * 1024,
                                    description="largest request body of a JSON route, counted as it streams in; "
                                    "past it the answer is 413 (IOC_API_BODY_MAX_BYTES)")
    import_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024,
                                      description="largest CSV a device import takes (IOC_API_IMPORT_MAX_BYTES)")
    route_body_max_bytes: dict[str, int] = Field(
        default_factory=dict,
        description="JSON: a route's path -> its own body limit in bytes, over the two above, e.g. "
        '{"/api/v1/users": 4096} (IOC_API_ROUTE_BODY_MAX_BYTES)')
    import_max_rows: int = Field(default=20_000, ge=1, le=1_000_000,
                                     description="most rows of one device import, counted while the CSV is parsed "
                                     "and before anything is stored (IOC_API_IMPORT_MAX_ROWS)")
    imports_per_key: int = Field(default=1, ge=1, le=100,
                                     description="device imports one key may run at once (IOC_API_IMPORTS_PER_KEY)")
    imports_max: int = Field(default=2, ge=1, le=100,
                                 description="device imports running at once in this process; each holds a "
                                 "database connection for its whole transaction (IOC_API_IMPORTS_MAX)")
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600,
                                      description="longest wait for the next part of a request body; past it the "
                                      "answer is 408 (IOC_API_BODY_TIMEOUT_S)")
    pool_timeout_s: float = Field(default=2.0, gt=0, le=60,
                                      description="longest a request waits for a database connection; past it the "
                                      "answer is 503 with Retry-After (IOC_API_POOL_TIMEOUT_S)")
    retry_after_s: int = Field(default=5, ge=1, le=3600,
                                   description="Retry-After of a 503 while the database is unavailable or busy "
                                   "(IOC_API_RETRY_AFTER_S)")
    export_idle_timeout_s: float = Field(default=30.0, gt=0, le=3600,
                                             description="longest a client may leave an export's next chunk "
                                             "unread before the export is dropped and its slot freed "
                                             "(IOC_API_EXPORT_IDLE_TIMEOUT_S)")
    export_send_timeout_s: float = Field(default=900.0, gt=0, le=86_400,
                                             description="longest an export may take to send in full, so a "
                                             "client reading a trickle cannot keep its slot for ever "
                                             "(IOC_API_EXPORT_SEND_TIMEOUT_S)")

    @field_validator("route_body_max_bytes")
    @classmethod
    def _route_limits(cls, value: dict[str, int]) -> dict[str, int]:
        for path, limit in value.items():
            if not path.startswith("/") or limit < 0:
                raise ValueError(f"{path!r}: {limit}: paths start with /, limits are bytes (0 or more)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(f"unknown time zone {value!r}") from err
        return value


class ApiClientSettings(_Base):
    """How ``ioc devices`` reaches a running IOC API: its URL and the caller's key (roles and audit apply)."""

    model_config = SettingsConfigDict(env_prefix="IOC_API_", extra="forbid")


    url: str = Field(default="http://127.0.0.1:8000",
                         description="base URL of the IOC API, without /api/v1 (IOC_API_URL)")
    key: SecretStr | None = Field(default=None, description="your API key, from `ioc users create` or an "
                                      "admin (IOC_API_KEY)")
    timeout_s: float = Field(default=60.0, gt=0, le=3600,
                                 description="longest wait for an answer; an import of thousands of rows takes "
                                 "seconds (IOC_API_TIMEOUT_S)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"must be http(s)://host[:port][/path], e.g. http://127.0.0.1:8000; got {value!r}")
        # The routes' prefix is added by the client: a URL copied from the OpenAPI page works as well.
        return value.strip().rstrip("/").removesuffix("/api/v1")

    def required_key(self) -> SecretStr:
        """The key, or a clear configuration error: every route of the device registry needs one."""
        if self.key is None or not self.key.get_secret_value().strip():
            raise ConfigError("IOC_API_KEY is not set: export the API key an admin gave you "
                              "(`ioc users create --role technician …` prints one)")
        return self.key


class ChirpStackTarget(BaseModel):
    """Where devices of one model go in ChirpStack."""

    application_id: UUID
    device_profile_id: UUID


class ChirpStackSettings(_Base):
    """How the API provisions devices in ChirpStack; without ``IOC_CHIRPSTACK_API`` it does not try."""

    model_config = SettingsConfigDict(env_prefix="IOC_CHIRPSTACK_", extra="forbid")


    api: str | None = Field(default=None, description="gRPC host:port, e.g. chirpstack:8080")
    token: SecretStr | None = Field(default=None, description="API token (a JWT from ChirpStack's UI)")
    tls: bool = False
    timeout_s: float = Field(default=5.0, gt=0, le=120)
    profiles: dict[str, ChirpStackTarget] = Field(
        default_factory=dict,
        description="JSON: device model (or \"*\" for any) -> {application_id, device_profile_id}",
    )
    profiles_file: Path | None = Field(default=None, description="the same mapping as a YAML/JSON file")
    calls_per_s: float = Field(default=20.0, gt=0, le=1000,
                                          description="ceiling on provisioning calls, so bulk imports stay gentle")
    retry_s: float = Field(default=30.0, gt=0, description="first retry delay; doubles up to 1 hour")

    @model_validator(mode="after")
    def _complete(self) -> ChirpStackSettings:
        if self.api is None:
            return self
        if self.token is None or not self.token.get_secret_value():
            raise ValueError("IOC_CHIRPSTACK_TOKEN is required when IOC_CHIRPSTACK_API is set")
        if self.profiles_file is not None:
            self.profiles = {**_read_targets(self.profiles_file), **self.profiles}
        if not self.profiles:
            raise ValueError("IOC_CHIRPSTACK_PROFILES or IOC_CHIRPSTACK_PROFILES_FILE must map device models "
                             "to a ChirpStack application and device profile")
        return self

    @property
    def enabled(self) -> bool:
        return self.api is not None

    def target_for(self, model: str | None) -> ChirpStackTarget | None:
        return self.profiles.get(model or "") or self.profiles.get("*")


def _read_targets(path: Path) -> dict[str, ChirpStackTarget]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    if not isinstance(document, dict):
        raise ValueError(f"{path} must map device models to {{application_id, device_profile_id}}")
    return {str(model): ChirpStackTarget.model_validate(target) for model, target in document.items()}


class BrokerSettings(_Base):
    """How the API manages developers' broker accounts; without ``IOC_BROKER_CONFIG_DIR`` it only stores them."""

    model_config = SettingsConfigDict(env_prefix="IOC_BROKER_", extra="forbid")


    config_dir: Path | None = Field(
        default=None,
        description="the folder `ioc broker config --out` wrote (internal/ and public/); the API rewrites the "
        "public broker's password and acl files in it on every change (IOC_BROKER_CONFIG_DIR)",
    )
    pid_file: Path | None = Field(
        default=None,
        description="the public broker's pid file (<dir>/public/mosquitto.pid); the API sends it SIGHUP after a "
        "change (IOC_BROKER_PID_FILE)",
    )
    admin_url: Annotated[MqttUrl | None, NoDecode] = Field(
        default=None,
        description="the public broker's service listener with the ioc-api account, "
        "mqtt://ioc-api:<password>@127.0.0.1:1885; the API ends the sessions of revoked credentials through it "
        "(IOC_BROKER_ADMIN_URL). Unset: a revoked credential's parked session lasts until its expiry",
    )
    public_url: str = Field(
        default=DEFAULT_PUBLIC_MQTT_URL,
        description="the broker as developers reach it, e.g. mqtts://iot.danang.gov.vn:8883 (IOC_BROKER_PUBLIC_URL)",
    )
    credentials_per_developer: int = Field(
        default=5, ge=1, le=100, description="most active MQTT credentials one developer may hold"
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        try:
            url = MqttUrl.parse(value)
        except ConfigError as err:
            raise ValueError(str(err).replace("IOC_MQTT_URL", "the URL")) from err
        if url.username or url.password:
            raise ValueError("must not hold a user name or password: every developer gets their own")
        return value

    @field_validator("admin_url", mode="before")
    @classmethod
    def _admin_url(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        try:
            url = MqttUrl.parse(value)
        except ConfigError as err:
            raise ValueError(str(err).replace("IOC_MQTT_URL", "the URL")) from err
        if not url.username or not url.password:
            raise ValueError("needs the ioc-api account: mqtt://ioc-api:<password>@host:port")
        return url

    @field_validator("config_dir")
    @classmethod
    def _existing_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"{value} is not a folder; create it with `ioc broker config --out {value}`")
        return value


class OpenDataSettings(_Base):
    """The open-data routes: the licence the catalogue states, and each key's share of the API."""

    model_config = SettingsConfigDict(env_prefix="IOC_OPEN_", extra="forbid")


    data_licence: str = Field(
        default="https://creativecommons.org/licenses/by/4.0/",
        pattern=r"^https?://\S+$",
        description="URL of the licence every published dataset carries (IOC_OPEN_DATA_LICENCE)",
    )
    base_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="the API as the public reaches it, for the catalogue's download links; unset: the request's own "
        "URL (IOC_OPEN_BASE_URL)",
    )
    rate_per_minute: float = Field(default=60.0, gt=0, le=60_000,
                                        description="open-data requests per minute and key (IOC_OPEN_RATE_PER_MINUTE)")
    rate_burst: int = Field(default=10, ge=1, le=10_000,
                                 description="requests a key may make at once after a quiet spell "
                                 "(IOC_OPEN_RATE_BURST)")
    exports_max: int = Field(default=3, ge=1, le=100,
                                  description="exports streaming at once in this process; each holds a database "
                                  "connection while it streams (IOC_OPEN_EXPORTS_MAX)")
    exports_per_key: int = Field(default=2, ge=1, le=100,
                                      description="exports one key may stream at once (IOC_OPEN_EXPORTS_PER_KEY)")


class FeedSettings(_Base):
    """The open MQTT feed the ingest publishes: readings, device status and zone summaries under a prefix."""

    model_config = SettingsConfigDict(env_prefix="IOC_FEED_", extra="forbid")


    enabled: bool = Field(default=True, description="publish the open feed (IOC_FEED_ENABLED)")
    url: str | None = Field(
        default=None, description="broker URL of the feed (IOC_FEED_URL); default: IOC_MQTT_URL, whose ingest "
        "account may write ioc/#")
    ca_file: Path | None = Field(default=None, description="CA bundle for an mqtts:// feed URL; default: "
                                      "IOC_MQTT_CA_FILE")
    client_id: str | None = Field(default=None, max_length=64,
                                       description="MQTT client id of the feed; default: <ingest client id>-feed")
    prefix: str = Field(default="ioc/v1", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
                             description="topic prefix: no wildcards, no leading or trailing slash")
    queue: int = Field(default=50_000, ge=100, le=5_000_000,
                            description="readings that may wait for the broker; beyond it the oldest are dropped")
    qos: Literal[0, 1] = Field(default=0, description="QoS of readings (status and summaries use 1)")
    status_interval_s: float = Field(default=30.0, ge=0, le=3600,
                                          description="seconds between device status and zone summary rounds; 0: off")

    @field_validator("url")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            MqttUrl.parse(value)
        except ConfigError as err:
            raise ValueError(str(err).replace("IOC_MQTT_URL", "IOC_FEED_URL")) from err
        return value

    def broker_url(self, mqtt: MqttSettings) -> MqttUrl:
        return MqttUrl.parse(self.url) if self.url else mqtt.url

    def broker_ca_file(self, mqtt: MqttSettings) -> Path | None:
        return self.ca_file or mqtt.ca_file


class GrafanaSettings(_Base):
    """Where ``ioc dashboards push`` finds Grafana, and how Grafana reaches the platform's database."""

    model_config = SettingsConfigDict(env_prefix="IOC_GRAFANA_", extra="forbid")


    url: str = Field(default="http://127.0.0.1:3000", pattern=r"^https?://\S+$",
                             description="Grafana's base URL (IOC_GRAFANA_URL)")
    token: SecretStr | None = Field(
        default=None, description="a service account token with the Editor role, or Admin to create the "
        "datasource (IOC_GRAFANA_TOKEN)")
    db_url: SecretStr | None = Field(
        default=None, description="libpq URL Grafana uses to read the platform database, ideally a read-only "
        "role (IOC_GRAFANA_DB_URL); default: IOC_DATABASE_URL")
    db_sslmode: Literal["disable", "require", "verify-ca", "verify-full"] = Field(
        default="disable", description="TLS mode of Grafana's database connections (IOC_GRAFANA_DB_SSLMODE)")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="HTTP timeout (IOC_GRAFANA_TIMEOUT_S)")

    @field_validator("db_url")
    @classmethod
    def _libpq(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a libpq URL starting with postgresql://")
        return value

    def required_token(self) -> SecretStr:
        """The token, or a clear configuration error: push cannot work without one."""
        if self.token is None or not self.token.get_secret_value().strip():
            raise ConfigError("IOC_GRAFANA_TOKEN is not set: create a service account token in Grafana "
                              "(Administration → Service accounts) and export it")
        return self.token


class CapSettings(_Base):
    """Public warnings (CAP 1.2): who the messages say they are from, and how often the public may read them."""

    model_config = SettingsConfigDict(env_prefix="IOC_CAP_", extra="forbid")

    sender: str = Field(default="ioc@danang.gov.vn", pattern=r"^[^\s,&<]+$",
                        description="the CAP <sender> of every warning: no spaces, commas, & or < (IOC_CAP_SENDER)")
    sender_name: str = Field(default="Trung tâm Giám sát, điều hành đô thị thông minh Đà Nẵng (IOC)",
                             min_length=1, max_length=200,
                             description="the CAP <senderName> shown to the public (IOC_CAP_SENDER_NAME)")
    identifier_prefix: str = Field(default="vn.gov.danang.ioc", pattern=r"^[A-Za-z0-9._:@-]{1,100}$",
                                   description="CAP identifiers are <prefix>.<year>.w<id>: letters, digits and "
                                   "._:@- (IOC_CAP_IDENTIFIER_PREFIX)")
    rate_per_minute: float = Field(default=120.0, gt=0, le=60_000,
                                   description="requests per minute and client address to the public warning "
                                   "feeds, which need no key (IOC_CAP_RATE_PER_MINUTE)")
    rate_burst: int = Field(default=20, ge=1, le=10_000,
                            description="public feed requests a client may make at once (IOC_CAP_RATE_BURST)")


class OperationsSettings(_Base):
    """``ioc operations run``: how often the hazard status of every zone is evaluated."""

    model_config = SettingsConfigDict(env_prefix="IOC_OPERATIONS_", extra="forbid")

    interval_s: float = Field(default=5.0, gt=0, le=3600,
                              description="seconds between evaluation rounds when no readings arrive, to catch "
                                          "silent stations (IOC_OPERATIONS_INTERVAL_S)")
    min_gap_s: float = Field(default=0.25, ge=0, le=60,
                             description="at least this many seconds between rounds woken by new readings, so a "
                                         "burst of commits costs one round (IOC_OPERATIONS_MIN_GAP_S)")
    busy_share: float = Field(default=0.15, gt=0, le=1,
                              description="rounds woken by new readings take at most this share of the time: a "
                                          "round of d seconds holds the next one back d / share; lower spares the "
                                          "database while a backlog drains, higher reacts sooner "
                                          "(IOC_OPERATIONS_BUSY_SHARE)")


class SopSettings(_Base):
    """The SOP cards ``ioc api`` shows with incidents; read and validated once at start-up."""

    model_config = SettingsConfigDict(env_prefix="IOC_SOP_", extra="forbid")

    dir: Path | None = Field(default=None, description="folder of SOP cards, one <kind>.yaml each (IOC_SOP_DIR); "
                                                       "default: deploy/sop of this source checkout")
class NotifySettings(_Base):
    """``ioc notify``: the channels notifications go out on. A channel without its settings is off, and its rows
    wait in the outbox for a dispatcher that has it; the public MQTT feed is on by default."""

    model_config = SettingsConfigDict(env_prefix="IOC_NOTIFY_", extra="forbid")

    webhook_secret: SecretStr | None = Field(
        default=None, description="Standard Webhooks signing secret, whsec_ + base64 of 24-64 random bytes; unset: "
        "no webhooks (IOC_NOTIFY_WEBHOOK_SECRET)")
    webhook_allow_private: bool = Field(
        default=False, description="let webhooks go to loopback, private and link-local addresses; off, such a "
        "URL is refused, so an operator's route cannot reach inside the city's network "
        "(IOC_NOTIFY_WEBHOOK_ALLOW_PRIVATE)")
    smtp_host: str | None = Field(default=None, description="SMTP server for e-mail; unset: no e-mail "
                                  "(IOC_NOTIFY_SMTP_HOST)")
    smtp_port: int = Field(default=587, ge=1, le=65_535, description="(IOC_NOTIFY_SMTP_PORT)")
    smtp_starttls: bool = Field(default=True, description="upgrade the connection with STARTTLS before logging in "
                                "(IOC_NOTIFY_SMTP_STARTTLS)")
    smtp_user: str | None = Field(default=None, description="SMTP login; unset: none (IOC_NOTIFY_SMTP_USER)")
    smtp_password: SecretStr | None = Field(default=None, description="(IOC_NOTIFY_SMTP_PASSWORD)")
    smtp_from: str | None = Field(default=None, description="sender address, e.g. ioc@danang.gov.vn "
                                  "(IOC_NOTIFY_SMTP_FROM)")
    zalo_url: str = Field(default="https://business.openapi.zalo.me", pattern=r"^https?://\S+$",
                          description="base URL of Zalo's ZNS API (IOC_NOTIFY_ZALO_URL)")
    zalo_access_token: SecretStr | None = Field(
        default=None, description="the Official Account's access token; unset: no Zalo (IOC_NOTIFY_ZALO_ACCESS_TOKEN)")
    zalo_template_id: str | None = Field(
        default=None, description="the approved ZNS template with the parameters title, content and reference "
        "(IOC_NOTIFY_ZALO_TEMPLATE_ID)")
    sms_url: str | None = Field(default=None, pattern=r"^https?://\S+$",
                                description="the SMS gateway's send URL; unset: no SMS (IOC_NOTIFY_SMS_URL)")
    sms_token: SecretStr | None = Field(default=None, description="bearer token of the SMS gateway "
                                        "(IOC_NOTIFY_SMS_TOKEN)")
    mqtt: bool = Field(default=True, description="publish public warnings on the open MQTT feed (IOC_NOTIFY_MQTT)")
    mqtt_url: str | None = Field(
        default=None, description="broker of the public feed (IOC_NOTIFY_MQTT_URL); default: the feed's, "
        "IOC_FEED_URL or IOC_MQTT_URL")
    timeout_s: float = Field(default=15.0, gt=0, le=300, description="longest wait for a channel's answer "
                             "(IOC_NOTIFY_TIMEOUT_S)")
    max_attempts: int = Field(default=8, ge=1, le=100, description="attempts before a message is given up as failed "
                              "(IOC_NOTIFY_MAX_ATTEMPTS)")
    retry_s: float = Field(default=10.0, gt=0, le=86_400, description="wait after the first failed attempt; doubles "
                           "after each (IOC_NOTIFY_RETRY_S)")
    retry_max_s: float = Field(default=3600.0, gt=0, le=86_400, description="longest wait between attempts "
                               "(IOC_NOTIFY_RETRY_MAX_S)")
    poll_s: float = Field(default=5.0, gt=0, le=3600, description="`ioc notify run` looks for due messages at least "
                          "this often; new ones wake it at once (IOC_NOTIFY_POLL_S)")
    batch: int = Field(default=100, ge=1, le=10_000, description="messages sent per round (IOC_NOTIFY_BATCH)")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            MqttUrl.parse(value)
        except ConfigError as err:
            raise ValueError(str(err).replace("IOC_MQTT_URL", "IOC_NOTIFY_MQTT_URL")) from err
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        raw = value.get_secret_value().strip()
        webhook_secret_key(raw)
        return SecretStr(raw)

    @model_validator(mode="after")
    def _complete(self) -> NotifySettings:
        if self.smtp_host and not self.smtp_from:
            raise ValueError("IOC_NOTIFY_SMTP_FROM is required when IOC_NOTIFY_SMTP_HOST is set")
        if self.smtp_from and "@" not in self.smtp_from:
            raise ValueError(f"IOC_NOTIFY_SMTP_FROM: {self.smtp_from!r} is not an e-mail address")
        if self.smtp_user and self.smtp_password is None:
            raise ValueError("IOC_NOTIFY_SMTP_PASSWORD is required when IOC_NOTIFY_SMTP_USER is set")
        if (self.zalo_access_token is None) != (not self.zalo_template_id):
            raise ValueError("Zalo needs both IOC_NOTIFY_ZALO_ACCESS_TOKEN and IOC_NOTIFY_ZALO_TEMPLATE_ID")
        if self.retry_max_s < self.retry_s:
            raise ValueError("IOC_NOTIFY_RETRY_MAX_S must not be shorter than IOC_NOTIFY_RETRY_S")
        return self

    def mqtt_broker(self, feed: FeedSettings, mqtt: MqttSettings) -> MqttUrl:
        """The public feed's broker: our own setting, else where the ingest publishes the feed."""
        return MqttUrl.parse(self.mqtt_url) if self.mqtt_url else feed.broker_url(mqtt)
