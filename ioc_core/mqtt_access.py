"""Who may do what on the broker: the kinds of MQTT account and the topics each may read or write."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "ACCOUNT_ROLES",
    "GRANTS",
    "OPEN_FEED_FILTER",
    "SERVICE_ACCOUNTS",
    "USERNAME_PATTERN",
    "Access",
    "Grant",
    "MqttRole",
]

MqttRole = Literal["chirpstack", "ingest", "developer"]
Access = Literal["read", "write", "readwrite"]

ACCOUNT_ROLES: Final[tuple[MqttRole, ...]] = ("chirpstack", "ingest", "developer")
# What the database's CHECK on mqtt_accounts.username allows; it also keeps ':' and white space, which would
# break the password and ACL files, out of every name.
USERNAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# The open feed the ingest publishes and third-party developers read.
OPEN_FEED_FILTER: Final = "ioc/v1/#"


@dataclass(frozen=True, slots=True)
class Grant:
    """One ACL line: ``access`` to the topics matching ``topic`` (an MQTT filter)."""

    access: Access
    topic: str


# Developers read the open feed and nothing else: never ChirpStack's raw application/# events, never a write.
GRANTS: Final[Mapping[MqttRole, tuple[Grant, ...]]] = MappingProxyType(
    {
        # ChirpStack publishes events and reads the commands (downlinks) queued for it.
        "chirpstack": (Grant("write", "application/#"), Grant("read", "application/+/device/+/command/#")),
        # Ingest workers read ChirpStack's events and publish the open feed; reading it back lets the worker
        # that leads the feed clear retained topics of devices that left it while no worker ran.
        "ingest": (Grant("read", "application/#"), Grant("readwrite", "ioc/#")),
        "developer": (Grant("read", OPEN_FEED_FILTER),),
    }
)

# The platform's own accounts, created by `ioc broker config` when missing: username -> role.
SERVICE_ACCOUNTS: Final[Mapping[str, MqttRole]] = MappingProxyType({"chirpstack": "chirpstack", "ioc-ingest": "ingest"})
