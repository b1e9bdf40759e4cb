"""Test support: the shared ChirpStack sample uplinks, in both encodings, with any field replaced.

The samples are ChirpStack's own wire bytes (shared/reference/chirpstack-sample-events.json); hostile variants
keep everything else of a real event, so the only thing wrong with one is the field a test changed.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from typing import Any

from chirpstack_api import integration
from google.protobuf import json_format

from gateways.mqtt import InboundMessage
from tests.reference import CHIRPSTACK_SAMPLES

__all__ = ["SAMPLE_PATH", "encode", "inbound", "sample", "samples", "topic_for"]

SAMPLE_PATH = CHIRPSTACK_SAMPLES


def samples() -> list[dict[str, Any]]:
    """The sample events (``id``, ``topic``, ``payload`` as a dict, ``wire`` as ChirpStack sent it)."""
    return list(json.loads(SAMPLE_PATH.read_text())["events"])


def sample(index: int = 0, *, dev_eui: str | None = None, fresh: bool = True) -> dict[str, Any]:
    """A deep copy of one sample's payload; ``fresh`` gives it a new deduplicationId and the current time."""
    payload: dict[str, Any] = copy.deepcopy(samples()[index]["payload"])
    if fresh:
        payload["deduplicationId"] = str(uuid.uuid4())
        payload["time"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    if dev_eui is not None:
        payload["deviceInfo"]["devEui"] = dev_eui
    return payload


def topic_for(payload: dict[str, Any], dev_eui: str | None = None) -> str:
    eui = dev_eui if dev_eui is not None else str(payload["deviceInfo"]["devEui"])
    return f"application/{payload['deviceInfo']['applicationId']}/device/{eui}/event/up"


def encode(payload: dict[str, Any], encoding: str = "json") -> bytes | None:
    """The payload as ChirpStack would send it; None when protobuf cannot carry the value (a type change)."""
    if encoding == "json":
        return json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        message = json_format.ParseDict(payload, integration.UplinkEvent(), ignore_unknown_fields=True)
        return bytes(message.SerializeToString())
    except (json_format.ParseError, ValueError, TypeError, OverflowError, RecursionError):
        return None


def inbound(topic: str, payload: bytes, *, mid: int = 1, duplicate: bool = False) -> InboundMessage:
    return InboundMessage(topic, payload, mid=mid, received_at=time.time(), session=0, duplicate=duplicate)
