"""The unit the simulator hands to a publisher: one MQTT message with what it stands for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Encoding", "EncodingChoice", "SimMessage"]

Encoding = Literal["json", "protobuf"]
EncodingChoice = Literal["json", "protobuf", "mixed"]


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One ChirpStack integration message as it would appear on the broker.

    ``deduplication_id`` is the event's own id (None for ``log`` and ``txack``, which have none);
    a ``status`` event shares it with the ``up`` that carried the device status. ``malformed`` marks
    messages the ingest must not store as good data: a broken body (truncated JSON, garbage protobuf) or
    a valid event whose payload is too short for its codec. ``duplicate`` marks a re-publication of an
    earlier message with identical bytes. ``time`` is the simulated POSIX time of the event.
    """

    topic: str
    payload: bytes
    event: str
    dev_eui: str
    deduplication_id: str | None
    malformed: bool
    encoding: Encoding = "json"
    duplicate: bool = False
    time: float = 0.0
