"""Broken message bodies of the kinds a real broker carries now and then, for the ingest's dead letters."""

from __future__ import annotations

import json
import random
from typing import Any, Final

from device_simulators.messages import Encoding
from gateways.chirpstack import EVENT_MESSAGES

__all__ = ["break_body"]

# A ChirpStack v3 application-server uplink: no deviceInfo, base64 DevEUI, objectJSON as a string.
_V3_UPLINK: Final = {
    "applicationID": "12",
    "applicationName": "dn-legacy",
    "deviceName": "legacy-node",
    "devEUI": "cLPVAAAAAAA=",
    "fCnt": 7,
    "fPort": 2,
    "data": "AWcBGg==",
    "objectJSON": '{"temperature":28.2}',
}


def break_body(body: bytes, event: str, encoding: Encoding, rng: random.Random) -> bytes:
    """A corrupted version of ``body`` that no ChirpStack event parser accepts."""
    if encoding == "json":
        choice = rng.random()
        if choice < 0.6:
            return body[: rng.randrange(1, len(body))]  # cut off mid-publish: never valid JSON
        if choice < 0.8:
            return json.dumps(_V3_UPLINK, separators=(",", ":")).encode()
        return b"\xff\xfe" + rng.randbytes(rng.randrange(4, 40))
    return _broken_protobuf(body, event, rng)


def _broken_protobuf(body: bytes, event: str, rng: random.Random) -> bytes:
    cls: Any = EVENT_MESSAGES[event]
    if len(body) > 2 and rng.random() < 0.7:
        cut = body[: rng.randrange(1, len(body))]
        if not _parses(cls, cut):
            return cut
    # Field number 0 is invalid in every protobuf message.
    return b"\x07" + rng.randbytes(rng.randrange(3, 24))


def _parses(cls: Any, body: bytes) -> bool:
    try:
        cls.FromString(body)
    except Exception:  # DecodeError, or RuntimeError from some upb builds
        return False
    return True
