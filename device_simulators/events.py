"""The event stream: every device's uplinks in simulated time order, as ChirpStack would publish them.

Each device reports on its own interval (with a little clock drift). An uplink first joins the device if it
is new (``join``), then becomes an ``up`` event heard by one to three gateways; now and then it also brings
a ``status`` (DevStatusAns, same deduplicationId), a ``log`` (late retransmission, codec failure) or, for
class C street lights, a downlink's ``txack`` and ``ack``. Loss leaves gaps in fCnt, duplicates re-publish
identical bytes a moment later, malformed messages carry broken bodies or payloads too short for their
codec. The same fleet, options and seed give the same messages, byte for byte.

One module of ~420 lines because the stream is one ordered loop: each event kind draws from the same random
state in a fixed order, which is what keeps a seed's messages identical; split, that order would be spread
over modules that must still be read together.
"""

from __future__ import annotations

import heapq
import random
import struct
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from device_simulators.environment import Environment
from device_simulators.fleet import Device, Fleet
from device_simulators.malformed import break_body
from device_simulators.messages import Encoding, EncodingChoice, SimMessage
from device_simulators.payloads import FORMATS, Values, cayenne_runtime_object
from device_simulators.radio import (
    RX2_FREQUENCY_HZ,
    RX2_SPREADING_FACTOR,
    SPREADING_FACTORS,
    UPLINK_CHANNELS_HZ,
    Link,
    adr_data_rate,
    links_for,
    receive,
)
from device_simulators.rendering import EventRenderer, RxFrame
from device_simulators.scenarios import Scenario, get_scenario
from device_simulators.sensors import (
    DEAD_BATTERY_V,
    FAST_INTERVAL_S,
    Sensors,
    SensorState,
    battery_percent,
    fault_flag,
    glitch,
)

__all__ = ["DEFAULT_START", "EventStream", "StreamOptions", "StreamStats", "generate"]

DEFAULT_START: Final = datetime(2025, 10, 14, 0, 0, tzinfo=UTC)
"""A wet-season Tuesday (07:00 in Da Nang), so short runs see showers and the morning rush."""

_RETRANSMISSION: Final = "Uplink was flagged as re-transmission / frame-counter did not increment"


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How the stream behaves; ratios left as None take the scenario's defaults."""

    seed: int = 1
    start: datetime = DEFAULT_START
    scenario: str = "normal"
    encoding: EncodingChoice = "json"
    loss_ratio: float | None = None
    """Share of uplinks lost on the way (the next one shows an fCnt gap)."""
    duplicate_ratio: float | None = None
    """Share of messages published a second time with identical bytes (same deduplicationId)."""
    malformed_ratio: float | None = None
    """Share of messages with a broken body or a payload too short for its codec."""
    status_interval_s: float = 6 * 3600.0
    retransmission_ratio: float = 0.002
    downlink_ratio: float = 0.02
    """Share of street-light uplinks followed by a confirmed downlink (txack, then ack)."""
    joins: bool = True
    """Start every device with an OTAA join; False starts them mid-session with no join event."""
    stream_id: str = ""
    """Extra seed material for parallel shards, so each draws its own ids and noise (weather is shared)."""
    storm_start: datetime | None = None
    """When the scenario's storm (if it has one) begins; None: the scenario's own delay after ``start``."""

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or (self.storm_start is not None and self.storm_start.tzinfo is None):
            raise ValueError("start and storm_start must be timezone-aware")
        for name in ("loss_ratio", "duplicate_ratio", "malformed_ratio", "retransmission_ratio",
                     "downlink_ratio"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        get_scenario(self.scenario)


@dataclass(slots=True)
class StreamStats:
    messages: int = 0
    by_event: Counter[str] = field(default_factory=Counter)
    by_encoding: Counter[str] = field(default_factory=Counter)
    malformed: int = 0
    duplicates: int = 0
    uplinks: int = 0
    """Frames the devices sent (including lost ones)."""
    lost: int = 0
    """Frames dropped by ``loss_ratio`` (fCnt gaps)."""
    lost_on_air: int = 0
    """Frames no gateway heard."""
    silenced: int = 0
    """Devices that stopped for good (dead battery, or the faults scenario)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "by_event": dict(self.by_event),
            "by_encoding": dict(self.by_encoding),
            "malformed": self.malformed,
            "duplicates": self.duplicates,
            "uplinks": self.uplinks,
            "lost": self.lost,
            "lost_on_air": self.lost_on_air,
            "silenced": self.silenced,
        }


@dataclass(slots=True)
class _Runtime:
    """LoRaWAN session and physical state of one device."""

    index: int
    device: Device
    sensor: SensorState
    links: tuple[Link, ...]
    dr: int
    joined: bool
    encode: Callable[[Values], bytes]
    dev_addr: str = ""
    f_cnt: int = 0
    f_cnt_down: int = 0
    next_status: float = 0.0
    silent_at: float | None = None


class EventStream(Iterator[SimMessage]):
    """An endless iterator of messages; stop it by count or by ``SimMessage.time``."""

    def __init__(self, fleet: Fleet, options: StreamOptions | None = None) -> None:
        self.options = options or StreamOptions()
        self.fleet = fleet
        self.stats = StreamStats()
        scenario: Scenario = get_scenario(self.options.scenario)
        self.scenario = scenario
        self.start = self.options.start.timestamp()
        self._loss = _ratio(self.options.loss_ratio, scenario.loss_ratio)
        self._duplicates = _ratio(self.options.duplicate_ratio, scenario.duplicate_ratio)
        self._malformed = _ratio(self.options.malformed_ratio, scenario.malformed_ratio)
        self._rng = random.Random(f"ioc-sim/{fleet.seed}/{self.options.seed}{self.options.stream_id}")
        begins = None if self.options.storm_start is None else self.options.storm_start.timestamp()
        self._sensors = Sensors(Environment(self.options.seed, scenario.storm(self.start, begins=begins)))
        self._render = EventRenderer(fleet)
        self._pending: deque[SimMessage] = deque()
        # (due time, tie-breaker, device index, a message due then or None for the device's next uplink)
        self._heap: list[tuple[float, int, int, SimMessage | None]] = []
        self._seq = 0
        gateways = [(g.lon, g.lat, g.gain_db) for g in fleet.gateways]
        rng = self._rng
        self._devices: list[_Runtime] = []
        for index, device in enumerate(fleet.devices):
            links = links_for(device.lon, device.lat, device.penetration_db, gateways)
            runtime = _Runtime(
                index=index,
                device=device,
                sensor=self._sensors.new_state(device, self.start, rng),
                links=links,
                dr=adr_data_rate(links),
                joined=not self.options.joins,
                encode=FORMATS[device.model_id].encode,
            )
            if runtime.joined:
                runtime.dev_addr = _dev_addr(rng)
                runtime.f_cnt = rng.randrange(0, 50_000)
            runtime.next_status = self.start + rng.uniform(0.0, self.options.status_interval_s)
            if device.battery_powered and rng.random() < scenario.dead_battery_share:
                runtime.sensor.drain_v_per_day = rng.uniform(1.0, 3.0)  # dead within hours
            if rng.random() < scenario.silent_share:
                runtime.silent_at = self.start + rng.uniform(0.0, 6 * 3600.0)
            self._devices.append(runtime)
            # Spread first uplinks over one interval so the load is even from the start.
            self._push(self.start + rng.uniform(0.0, device.uplink_interval_s), index, None)

    def __iter__(self) -> Iterator[SimMessage]:
        return self

    def __next__(self) -> SimMessage:
        while not self._pending:
            if not self._heap:
                raise StopIteration
            self._step()
        return self._pending.popleft()

    # --- scheduling ----------------------------------------------------------------------------------------

    def _push(self, t: float, index: int, message: SimMessage | None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, index, message))

    def _step(self) -> None:
        t, _, index, deferred = heapq.heappop(self._heap)
        if deferred is not None:
            self._emit(deferred, may_duplicate=not deferred.duplicate)
            return
        rt = self._devices[index]
        if rt.silent_at is not None and t >= rt.silent_at:
            self.stats.silenced += 1
            return
        if not rt.joined:
            # OTAA: the join-accept comes back within seconds and the first uplink follows.
            self._join(rt, t)
            self._push(t + self._rng.uniform(2.0, 8.0), index, None)
            return
        if self._uplink(rt, t):
            drift = 1.0 + self._rng.uniform(-0.02, 0.02)
            # A level sensor in alarm mode (its level above alert, or rising fast) reports every minute.
            interval = FAST_INTERVAL_S if rt.sensor.alarm_mode else rt.device.uplink_interval_s
            self._push(t + interval * drift, index, None)
        else:
            self.stats.silenced += 1

    def _emit(self, message: SimMessage, *, may_duplicate: bool = True) -> None:
        stats = self.stats
        stats.messages += 1
        stats.by_event[message.event] += 1
        stats.by_encoding[message.encoding] += 1
        stats.malformed += message.malformed
        stats.duplicates += message.duplicate
        self._pending.append(message)
        if may_duplicate and self._duplicates and self._rng.random() < self._duplicates:
            # A QoS 1 redelivery or a bridge publishing twice: same bytes, a little later.
            self._push(message.time + self._rng.uniform(0.05, 5.0), -1, replace(message, duplicate=True))

    def _encoding(self) -> Encoding:
        choice = self.options.encoding
        if choice == "mixed":
            return "json" if self._rng.random() < 0.5 else "protobuf"
        return choice

    def _uuid(self) -> str:
        # A version-4 UUID drawn from the stream's generator, so ids repeat with the seed.
        n = self._rng.getrandbits(128) & ~(0xF << 76) & ~(0x3 << 62) | (0x4 << 76) | (0x2 << 62)
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    # --- one uplink and what comes with it ----------------------------------------------------------------

    def _uplink(self, rt: _Runtime, t: float) -> bool:
        """Produce the messages of one uplink; False when the device has died."""
        rng, device, render = self._rng, rt.device, self._render
        values = self._sensors.read(device, rt.sensor, t, rng)
        if device.battery_powered and values["battery_voltage"] < DEAD_BATTERY_V:
            return False
        scenario = self.scenario
        if scenario.glitch_ratio and rng.random() < scenario.glitch_ratio:
            glitch(device.kind, values)
        if scenario.fault_flag_ratio and rng.random() < scenario.fault_flag_ratio:
            fault_flag(device.kind, values)
        f_cnt = rt.f_cnt
        rt.f_cnt += 1
        self.stats.uplinks += 1
        if self._loss and rng.random() < self._loss:
            self.stats.lost += 1
            return True
        sf = SPREADING_FACTORS[rt.dr]
        heard = receive(rt.links, sf, rng)
        if not heard:
            self.stats.lost_on_air += 1
            return True
        channel = rng.randrange(len(UPLINK_CHANNELS_HZ))
        counter = int(t * 1e6)  # the gateway's microsecond counter goes into the opaque context
        bits, uniform = rng.getrandbits, rng.uniform
        frames = [
            RxFrame(r.gateway, bits(32), t + uniform(0.015, 0.12), r.rssi, r.snr, channel,
                    ((counter + r.gateway * 7919) & 0xFFFFFFFF).to_bytes(4, "big"))
            for r in heard
        ]  # fmt: skip
        if len(frames) > 1:
            frames.sort(key=_ns_time)
        data = rt.encode(values)
        broken = bool(self._malformed) and rng.random() < self._malformed
        short = broken and rng.random() < 0.4
        if short:
            data = data[: rng.randrange(1, len(data))]
        obj = cayenne_runtime_object(data) if device.chirpstack_codec == "CAYENNE_LPP" else None
        dedup = self._uuid()
        encoding = self._encoding()
        body = render.uplink(
            rt.index, encoding, deduplication_id=dedup, t=t, dev_addr=rt.dev_addr, dr=rt.dr, f_cnt=f_cnt,
            f_port=device.fport, confirmed=False, data=data, obj=obj, frames=frames,
            frequency=UPLINK_CHANNELS_HZ[channel], spreading_factor=sf,
        )  # fmt: skip
        if broken and not short:
            body = break_body(body, "up", encoding, rng)
        event_time = render.time_of(t, frames)
        self._emit(SimMessage(render.topic(rt.index, "up"), body, "up", device.dev_eui, dedup, broken,
                              encoding, False, event_time))
        if device.chirpstack_codec == "CAYENNE_LPP" and obj is None:
            # ChirpStack still publishes the up (without object) and reports the codec failure.
            self._log(rt, event_time, "ERROR", "UPLINK_CODEC",
                      "Decode Cayenne LPP payload: failed to fill whole buffer", dedup)  # fmt: skip
        if t >= rt.next_status:
            rt.next_status += self.options.status_interval_s
            self._status(rt, event_time, dedup, values.get("battery_voltage"), frames)
        if rng.random() < self.options.retransmission_ratio:
            self._log(rt, event_time + rng.uniform(1.0, 20.0), "WARNING", "UPLINK_F_CNT_RETRANSMISSION",
                      _RETRANSMISSION, self._uuid(), defer=True)  # fmt: skip
        if device.device_class == "CLASS_C" and rng.random() < self.options.downlink_ratio:
            self._downlink(rt, event_time, frames[0])
        return True

    def _join(self, rt: _Runtime, t: float) -> None:
        rt.joined = True
        rt.dev_addr = _dev_addr(self._rng)
        rt.f_cnt = 0
        rt.f_cnt_down = 0
        dedup = self._uuid()
        encoding = self._encoding()
        body = self._render.join(rt.index, encoding, deduplication_id=dedup, t=t, dev_addr=rt.dev_addr)
        self._emit_other(rt, "join", body, encoding, dedup, t)

    def _status(
        self, rt: _Runtime, t: float, dedup: str, battery_v: float | None, frames: list[RxFrame]
    ) -> None:
        rng = self._rng
        best = max(f.snr for f in frames)
        margin = max(-32, min(31, round(best + rng.gauss(0.0, 1.0))))
        if battery_v is None:
            external, level = True, 0.0
        else:
            # DevStatusAns carries 1..254; ChirpStack reports (battery as f32) / 254.0 * 100.0.
            raw = max(1, min(254, round(battery_percent(battery_v) * 254 / 100)))
            external, level = False, _f32(_f32(raw / 254.0) * 100.0)
        encoding = self._encoding()
        body = self._render.status(rt.index, encoding, deduplication_id=dedup, t=t, margin=margin,
                                   external_power=external, battery_level=level)  # fmt: skip
        self._emit_other(rt, "status", body, encoding, dedup, t)

    def _log(
        self, rt: _Runtime, t: float, level: str, code: str, description: str, dedup: str, *, defer: bool = False
    ) -> None:
        encoding = self._encoding()
        body = self._render.log(rt.index, encoding, t=t, level=level, code=code, description=description,
                                context={"deduplication_id": dedup})  # fmt: skip
        self._emit_other(rt, "log", body, encoding, None, t, defer=defer)

    def _downlink(self, rt: _Runtime, t: float, frame: RxFrame) -> None:
        """A confirmed downlink to a class C device: sent at once on the RX2 channel, acked later."""
        rng = self._rng
        queue_item = self._uuid()
        f_cnt_down = rt.f_cnt_down
        rt.f_cnt_down += 1
        encoding = self._encoding()
        sent = t + rng.uniform(0.5, 3.0)
        body = self._render.txack(
            rt.index, encoding, t=sent, downlink_id=rng.getrandbits(32), queue_item_id=queue_item,
            f_cnt_down=f_cnt_down, gateway=frame.gateway, frequency=RX2_FREQUENCY_HZ,
            spreading_factor=RX2_SPREADING_FACTOR, context=frame.context,
        )  # fmt: skip
        self._emit_other(rt, "txack", body, encoding, None, sent, defer=True)
        # The street light acknowledges in its next frame; a few are never heard (ack timeout).
        acked = rng.random() < 0.95
        dedup = self._uuid()
        encoding = self._encoding()
        ack_time = sent + rng.uniform(1.0, 10.0)
        body = self._render.ack(
            rt.index, encoding, deduplication_id=dedup, t=ack_time, queue_item_id=queue_item,
            acknowledged=acked, f_cnt_down=f_cnt_down,
        )  # fmt: skip
        self._emit_other(rt, "ack", body, encoding, dedup, ack_time, defer=True)

    def _emit_other(
        self,
        rt: _Runtime,
        event: str,
        body: bytes,
        encoding: Encoding,
        dedup: str | None,
        t: float,
        *,
        defer: bool = False,
    ) -> None:
        """Publish now, or (``defer``) when the stream reaches ``t``, to keep messages in time order."""
        broken = bool(self._malformed) and self._rng.random() < self._malformed
        if broken:
            body = break_body(body, event, encoding, self._rng)
        message = SimMessage(self._render.topic(rt.index, event), body, event, rt.device.dev_eui, dedup,
                             broken, encoding, False, t)  # fmt: skip
        if defer:
            self._push(t, rt.index, message)
        else:
            self._emit(message)


def _ns_time(frame: RxFrame) -> float:
    return frame.ns_time


def _f32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def _ratio(option: float | None, default: float) -> float:
    return default if option is None else option


def _dev_addr(rng: random.Random) -> str:
    # NetID 000000 leaves 25 bits of device address (NwkID 0 in the top seven bits).
    return f"{rng.getrandbits(25):08x}"


def generate(fleet: Fleet, options: StreamOptions | None = None) -> EventStream:
    """The fleet's endless, deterministic message stream."""
    return EventStream(fleet, options)
