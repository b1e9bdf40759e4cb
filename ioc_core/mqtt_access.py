"""Who may do what on the two brokers: the kinds of MQTT account, the broker and listener each belongs to, and
the topics each may read or write.

    internal broker (ChirpStack's events; loopback or a private network)
        chirpstack   writes application/#, reads its command topics
        ioc-ingest   reads application/#
    public broker (the open feed; developers)
        service listener (private):   ioc-feed   reads and writes ioc/v1/# (the ingest publishes the feed)
                                      ioc-api    no topics: the API ends the sessions of revoked credentials
        developer listener(s):        dev-<user id>-<name>-<suffix>   reads ioc/v1/#, nothing else

Developers are never in the internal broker's files, so no developer credential can reach application/#.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "ACCOUNT_ROLES",
    "DEVELOPER_PREFIX",
    "GRANTS",
    "OPEN_FEED_FILTER",
    "ROLE_PLACE",
    "SERVICE_ACCOUNTS",
    "USERNAME_PATTERN",
    "Access",
    "Grant",
    "MqttRole",
    "Place",
    "developer_username",
    "label_slug",
]

MqttRole = Literal["chirpstack", "ingest", "feed", "api", "developer"]
# Where an account may log in: the internal broker, the public broker's service listener, or its developer
# listeners. Each place has a password file and an ACL of its own.
Place = Literal["internal", "service", "developer"]
Access = Literal["read", "write", "readwrite"]

ACCOUNT_ROLES: Final[tuple[MqttRole, ...]] = ("chirpstack", "ingest", "feed", "api", "developer")
ROLE_PLACE: Final[Mapping[MqttRole, Place]] = MappingProxyType(
    {"chirpstack": "internal", "ingest": "internal", "feed": "service", "api": "service", "developer": "developer"}
)
# Every developer username starts with it, and no service account or service client id may: on the developer
# listener the client id is the username, so a service's session can never be taken over by a developer.
DEVELOPER_PREFIX: Final = "dev-"
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
        # Ingest workers read ChirpStack's events on the internal broker ...
        "ingest": (Grant("read", "application/#"),),
        # ... and publish the open feed on the public one; reading it back lets the worker that leads the feed
        # clear retained topics of devices that left it while no worker ran.
        "feed": (Grant("readwrite", OPEN_FEED_FILTER),),
        # The API only connects to take over (and so end) the session of a revoked developer credential.
        "api": (),
        "developer": (Grant("read", OPEN_FEED_FILTER),),
    }
)

# The platform's own accounts, created by `ioc broker config` when missing: username -> role.
SERVICE_ACCOUNTS: Final[Mapping[str, MqttRole]] = MappingProxyType(
    {"chirpstack": "chirpstack", "ioc-ingest": "ingest", "ioc-feed": "feed", "ioc-api": "api"}
)


# A label's slug in the username; the label itself is kept whole beside it.
_SLUG_LENGTH = 24
# Letters NFKD does not take apart: Vietnamese đ is not d plus a mark.
_UNDECOMPOSED = str.maketrans({"đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae", "Æ": "AE"})


def label_slug(label: str) -> str:
    """What a label becomes in a username: accents dropped (``lũ lụt`` → ``lu_lut``), every run of anything
    but ASCII letters and digits one ``_``, at most 24 characters; empty when the label has no letter or digit
    to keep. Dashes go too, so a username always has the same four dash-separated parts."""
    ascii_only = unicodedata.normalize("NFKD", label.translate(_UNDECOMPOSED)).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]+", "_", ascii_only).strip("_")[:_SLUG_LENGTH].strip("_")


def developer_username(user_id: int, owner: str, suffix: str) -> str:
    """``dev-<user id>-<name>-<suffix>``: the user id (digits up to the first dash) makes two developers' names
    differ whatever their user names (``dev@x`` and ``dev_x`` both sanitise to ``dev_x``), so a name can only
    ever collide with one of the same developer's own accounts. A name that already starts with ``dev``
    (``dev-anna``, ``dev_anna``, ``dev``) loses it, so no username reads ``dev-7-dev-anna-…``."""
    head = f"{DEVELOPER_PREFIX}{user_id}-"
    stem = re.sub(r"[^A-Za-z0-9._]", "_", owner)
    stem = re.sub(r"^dev(?:[._]+|$)", "", stem, flags=re.IGNORECASE).strip("._")
    stem = stem[: max(0, 64 - len(head) - len(suffix) - 1)]
    return f"{head}{stem}-{suffix}" if stem else f"{head}{suffix}"
