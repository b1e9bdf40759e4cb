"""From raw MQTT messages to the rows of one batch: parse, resolve devices, decode, normalise.

The steps are split so the worker can do the database look-ups between them; each step works on the
whole batch, because per-message round trips are what makes ingest pipelines slow. Each step also stands
alone per message: whatever one message raises makes that message a dead letter with its stage and reason,
and its neighbours go on (docs/ingest-hardening.md).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, Protocol

from gateways.chirpstack import (
    EVENT_TYPE_OF,
    AckEvent,
    DeviceInfo,
    Event,
    JoinEvent,
    LocationEvent,
    LogEvent,
    RxInfo,
    StatusEvent,
    TxAckEvent,
    UplinkEvent,
    parse_event,
    parse_topic,
)
from gateways.mqtt import InboundMessage
from ingest.codecs.result import DecodeResult
from ingest.dead_letters import DeadLetter, fingerprint
from ingest.devices import DeviceRef
from ingest.normalise import Quality, normalise
from ingest.rows import EventRow, MeasurementRow, UplinkRow
from ioc_core.errors import SkippableError
from ioc_core.metrics import VOCABULARY

__all__ = ["Batch", "CodecLookup", "EdgeLimits", "Parsed", "build_rows", "parse_messages"]

log = logging.getLogger(__name__)

_BATTERY = VOCABULARY["battery"].id
_MARGIN = VOCABULARY["link_margin"].id


class CodecLookup(Protocol):
    def __contains__(self, codec_id: object) -> bool: ...

    def get(self, codec_id: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What the ingest accepts from the broker before it trusts a message (IOC_INGEST_* settings)."""

    max_event_bytes: int = 128 * 1024
    """Larger events are dead letters that keep only their first ``keep_bytes``."""
    keep_bytes: int = 4096
    future_s: float = 600.0
    """An event time further ahead of the receive time than this is not trusted (stored at receive time)."""
    past_s: float = 730 * 86400.0
    """Nor is one further behind (default: the raw data's retention)."""


class Parsed(NamedTuple):  # a tuple: created per message, and cheaper than a frozen dataclass
    message: InboundMessage
    event: Event
    claimed: datetime | None = None
    """The event's own time when it was outside the trusted window; ``event.time`` is then the receive time."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Everything one batch will write; measurement rows wait on the idempotent insert of their parent.

    Built by ``build_rows`` only, and read-only after it: the writer and the open feed read it, on other
    threads, and a retried write starts again from the same batch. Rows are laid out as ``ingest.rows`` says.
    """

    messages: list[InboundMessage]
    """The messages the batch came from, every one acknowledged when the batch is committed."""
    uplinks: Sequence[UplinkRow]
    uplink_measurements: Mapping[uuid.UUID, Sequence[MeasurementRow]]
    """Measurement rows by the deduplication id of their uplink (an empty list when nothing was decoded)."""
    events: Sequence[EventRow]
    event_measurements: Mapping[uuid.UUID, Sequence[MeasurementRow]]
    """Measurement rows by the key of their device event (status events carry battery and margin)."""
    dead_letters: Sequence[DeadLetter]
    gateways_seen: Mapping[int, datetime]
    event_times: Sequence[float]
    flagged: bool
    """Some row's event time was not trusted (see ``ingest.writer._pin_untrusted_times``)."""


@dataclass(slots=True)
class _Rows:
    """What ``build_rows`` gathers before it makes the batch; each message's step appends only when it is done."""

    uplinks: list[UplinkRow] = field(default_factory=list)
    uplink_measurements: dict[uuid.UUID, list[MeasurementRow]] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    event_measurements: dict[uuid.UUID, list[MeasurementRow]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    gateways_seen: dict[int, datetime] = field(default_factory=dict)
    event_times: list[float] = field(default_factory=list)
    flagged: bool = False


_DEFAULT_LIMITS = EdgeLimits()


def parse_messages(
    messages: list[InboundMessage], limits: EdgeLimits = _DEFAULT_LIMITS
) -> tuple[list[Parsed], list[DeadLetter]]:
    parsed: list[Parsed] = []
    dead: list[DeadLetter] = []
    max_bytes = limits.max_event_bytes
    if not messages:
        return parsed, dead
    # One window per batch, from its first arrival (the buffer keeps arrival order): the batch spans less
    # than a second in the usual case, nothing against minutes of tolerance, and it saves a datetime per
    # message on the path every uplink takes.
    first = _received(messages[0])
    earliest = first - timedelta(seconds=limits.past_s)
    latest = first + timedelta(seconds=limits.future_s)
    for message in messages:
        if message.original_size or len(message.payload) > max_bytes:
            dead.append(_oversized(message, limits))
            continue
        try:
            topic = parse_topic(message.topic)
            event = parse_event(topic, message.payload)
        except SkippableError as err:
            dead.append(_dead(message, err.stage, err.reason))
            continue
        except Exception as err:  # a parser bug must cost one message, never the worker
            dead.append(_dead(message, "parse", f"parser raised {type(err).__name__}: {err}"))
            continue
        stamp = event.time
        if stamp is None:
            parsed.append(Parsed(message, event))
            continue
        if earliest <= stamp <= latest:
            parsed.append(Parsed(message, event))
        else:
            # A clock is off (ChirpStack's, or a gateway's GPS: a week-number rollover lands ~20 years back):
            # the data is kept at the time we know, with the time it claimed beside it.
            event.time = _received(message)
            parsed.append(Parsed(message, event, stamp))
    return parsed, dead


def _oversized(message: InboundMessage, limits: EdgeLimits) -> DeadLetter:
    size = message.original_size or len(message.payload)
    kept = message.payload[: limits.keep_bytes]
    # The kept bytes alone would give two different huge messages with one beginning the same identity.
    identity = fingerprint(message.topic, kept + b"\x00" + str(size).encode())
    reason = (f"event of {size} bytes is larger than IOC_INGEST_MAX_EVENT_BYTES ({limits.max_event_bytes}); "
              f"the first {len(kept)} bytes are kept")
    return DeadLetter.of(message.topic, kept, stage="parse", reason=reason, received_at=message.received_at,
                         identity=identity)


def device_infos(parsed: list[Parsed]) -> dict[str, DeviceInfo]:
    out: dict[str, DeviceInfo] = {}
    for p in parsed:
        info = p.event.device_info
        if info is not None:
            out.setdefault(info.dev_eui, info)
    return out


def gateways_heard(parsed: list[Parsed]) -> dict[str, RxInfo]:
    out: dict[str, RxInfo] = {}
    for p in parsed:
        if isinstance(p.event, UplinkEvent):
            for rx in p.event.rx_info:
                if rx.gateway_id:
                    out.setdefault(rx.gateway_id, rx)
    return out


def build_rows(
    parsed: list[Parsed],
    devices: Mapping[str, DeviceRef],
    gateways: Mapping[str, int],
    codecs: CodecLookup,
    *,
    messages: list[InboundMessage] | None = None,
    dead_letters: Iterable[DeadLetter] = (),
) -> Batch:
    """The batch of ``parsed`` (whose devices and gateways are resolved) from ``messages``; the
    ``dead_letters`` found before (parse, device) come first among the batch's."""
    batch = _Rows(dead_letters=list(dead_letters))
    ahead = getattr(codecs, "decode_ahead", None)
    if ahead is not None:  # JavaScript decodes of the batch run in parallel worker processes first
        try:
            ahead((devices[p.event.device_info.dev_eui].codec_id, p.event) for p in parsed
                  if isinstance(p.event, UplinkEvent) and p.event.device_info is not None)
        except Exception:  # decoding ahead only saves time: each message is decoded (and judged) below anyway
            log.exception("decoding the batch's JavaScript uplinks ahead failed; decoding them one by one")
    for p in parsed:
        event = p.event
        assert event.device_info is not None  # parse_event guarantees it
        device = devices[event.device_info.dev_eui]
        if p.claimed is not None:
            batch.flagged = True
        try:
            if isinstance(event, UplinkEvent):
                _uplink(batch, p.message, event, device, gateways, codecs, p.claimed)
            else:
                _device_event(batch, p.message, event, device, p.claimed)
        except Exception as err:  # each step appends only when it is done, so the batch stays consistent
            batch.dead_letters.append(_dead(p.message, "normalise", f"{type(err).__name__}: {err}",
                                            dev_eui=device.dev_eui,
                                            deduplication_id=getattr(event, "deduplication_id", None)))
    return Batch(
        messages=[] if messages is None else messages,
        uplinks=batch.uplinks, uplink_measurements=batch.uplink_measurements,
        events=batch.events, event_measurements=batch.event_measurements, dead_letters=batch.dead_letters,
        gateways_seen=batch.gateways_seen, event_times=batch.event_times, flagged=batch.flagged,
    )


def _dead(message: InboundMessage, stage: str, reason: str, **extra: Any) -> DeadLetter:
    return DeadLetter.of(
        message.topic, message.payload, stage=stage, reason=reason, received_at=message.received_at, **extra
    )


def _received(message: InboundMessage) -> datetime:
    return datetime.fromtimestamp(message.received_at, UTC)


def _decode(
    event: UplinkEvent, payload: bytes, device: DeviceRef, codecs: CodecLookup
) -> tuple[str, str | None, dict[str, Any] | None, str | None]:
    """(decode_status, codec_id, data, problem); ChirpStack's own ``object`` wins over our codecs."""
    if event.encrypted:
        return "encrypted", None, None, None
    if event.object is not None:
        return "ok", "chirpstack", event.object, None
    if event.f_port == 0 or not payload:
        return "empty", None, None, None
    codec_id = device.codec_id
    if not codec_id:
        return "no_codec", None, None, f"no codec for device {device.dev_eui}"
    if codec_id not in codecs:
        return "no_codec", codec_id, None, f"codec {codec_id!r} of device {device.dev_eui} is not installed"
    try:
        result: DecodeResult = codecs.get(codec_id).decode(payload, event.f_port, recv_time=event.time)
    except Exception as err:  # a codec that raises has a bug; the message must still not be lost
        return "error", codec_id, None, f"codec {codec_id} raised {type(err).__name__}: {err}"
    if result.errors:
        return "error", codec_id, None, f"codec {codec_id}: " + "; ".join(result.errors)
    return ("warning" if result.warnings else "ok"), codec_id, result.data, None


def _uplink(
    batch: _Rows,
    message: InboundMessage,
    event: UplinkEvent,
    device: DeviceRef,
    gateways: Mapping[str, int],
    codecs: CodecLookup,
    claimed: datetime | None,
) -> None:
    dedup = event.deduplication_id
    assert dedup is not None  # parse_event refuses uplinks without one
    received = _received(message)
    when = event.time or received
    try:
        payload = event.payload()
    except SkippableError as err:
        batch.dead_letters.append(_dead(message, err.stage, err.reason, dev_eui=device.dev_eui))
        return
    status, codec_id, data, problem = _decode(event, payload, device, codecs)
    rows: list[MeasurementRow] = []
    if data is not None:
        try:
            normalised = normalise(data)
        except Exception as err:  # e.g. a shape of decoded data normalise has never seen
            status, problem = "error", f"normalise raised {type(err).__name__}: {err}"
            stage = "normalise"
        else:
            if normalised.warnings and status == "ok":
                status = "warning"
            for r in normalised.readings:  # in the order of ingest.rows.MEASUREMENT
                rows.append((when, device.id, device.zone_id, r.metric.id, r.value, int(r.quality)))
            stage = "decode"
    else:
        stage = "decode"

    best: RxInfo | None = None
    heard: list[int] = []
    for rx in event.rx_info:
        if best is None or rx.rssi > best.rssi:
            best = rx
        if rx.gateway_id in gateways:
            heard.append(gateways[rx.gateway_id])
    lora = event.tx_info.modulation.lora if event.tx_info and event.tx_info.modulation else None
    # Only now, with every value computed, does the message touch the batch.
    if problem is not None:
        batch.dead_letters.append(_dead(message, stage, problem, dev_eui=device.dev_eui, deduplication_id=dedup))
    batch.uplink_measurements[dedup] = rows
    for gid in heard:
        seen = batch.gateways_seen.get(gid)
        if seen is None or seen < when:
            batch.gateways_seen[gid] = when
    batch.uplinks.append(
        (  # in the order of ingest.rows.UPLINK
            when,
            received,
            device.id,
            dedup,
            device.zone_id,
            event.dev_addr or None,
            event.f_cnt,
            event.f_port,
            event.dr,
            event.confirmed,
            event.adr,
            event.tx_info.frequency if event.tx_info else None,
            lora.spreading_factor if lora else None,
            best.rssi if best else None,
            best.snr if best else None,
            len(event.rx_info),
            gateways.get(best.gateway_id) if best else None,
            payload,
            codec_id,
            status,
            claimed,
        )
    )
    batch.event_times.append(when.timestamp())


def _device_event(
    batch: _Rows, message: InboundMessage, event: Event, device: DeviceRef, claimed: datetime | None
) -> None:
    received = _received(message)
    when = event.time or received
    kind = EVENT_TYPE_OF[type(event)]
    dedup: uuid.UUID | None = getattr(event, "deduplication_id", None)
    # Events without a deduplication id (txack, log) are identified by their bytes.
    key = dedup or fingerprint(message.topic, message.payload)
    battery = margin = external = level = code = None
    details: dict[str, Any] = {}
    readings: list[MeasurementRow] = []
    if isinstance(event, StatusEvent):
        margin = event.margin
        external = event.external_power_source
        readings.append((when, device.id, device.zone_id, _MARGIN, float(margin), int(Quality.GOOD)))
        if not event.battery_level_unavailable and not event.external_power_source:
            battery = event.battery_level
            quality = Quality.GOOD if 0.0 <= battery <= 100.0 else Quality.OUT_OF_RANGE
            readings.append((when, device.id, device.zone_id, _BATTERY, float(battery), int(quality)))
    elif isinstance(event, LogEvent):
        level, code = event.level, event.code
        details = {"description": event.description, "context": event.context}
    elif isinstance(event, JoinEvent):
        details = {"devAddr": event.dev_addr, "regionConfigId": event.region_config_id}
    elif isinstance(event, AckEvent):
        details = {"queueItemId": event.queue_item_id, "acknowledged": event.acknowledged,
                   "fCntDown": event.f_cnt_down}
    elif isinstance(event, TxAckEvent):
        details = {"queueItemId": event.queue_item_id, "downlinkId": event.downlink_id,
                   "fCntDown": event.f_cnt_down, "gatewayId": event.gateway_id}
    elif isinstance(event, LocationEvent) and event.location is not None:
        loc = event.location
        details = {"latitude": loc.latitude, "longitude": loc.longitude, "altitude": loc.altitude,
                   "source": loc.source, "accuracy": loc.accuracy}
    # allow_nan=False: jsonb has no NaN, and a refusal here is this message's, not the batch's.
    text = json.dumps(details, allow_nan=False)
    # In the order of ingest.rows.DEVICE_EVENT.
    batch.events.append((when, received, device.id, kind, key, battery, margin, external, level, code, text,
                         claimed))
    if readings:
        batch.event_measurements[key] = readings
