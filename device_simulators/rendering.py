"""ChirpStack event bodies for simulated devices, in both encodings and fast.

``up`` events in JSON come from pre-rendered per-device and per-gateway fragments joined with the variable
parts; every other body is a real ``chirpstack_api`` message rendered by ``gateways.chirpstack.wire``. The
unit tests check that the fast path gives the same bytes as the generic renderer.
"""

from __future__ import annotations

import functools
import math
from binascii import b2a_base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from chirpstack_api import common, gw, integration

from device_simulators.fleet import Device, Fleet
from device_simulators.messages import Encoding
from device_simulators.radio import BANDWIDTH_HZ, REGION_CONFIG_ID
from gateways.chirpstack import format_f32, format_f64, format_fraction, json_string, render, render_json

__all__ = ["EventRenderer", "RxFrame", "split_time"]

# GPS time started 1980-01-06 and is 18 leap seconds ahead of UTC.
_GPS_EPOCH_UNIX: Final = 315_964_800
_GPS_LEAP_SECONDS: Final = 18


class RxFrame(NamedTuple):
    """One gateway's reception of an uplink."""

    gateway: int
    uplink_id: int
    ns_time: float
    rssi: int
    snr: float
    channel: int
    context: bytes


def split_time(t: float) -> tuple[int, int]:
    """POSIX seconds as (seconds, nanoseconds), the way both encodings carry it."""
    seconds = math.floor(t)
    return seconds, min(int((t - seconds) * 1e9), 999_999_999)


class _Stamps:
    """RFC 3339 timestamps with the date-time up to the minute cached (events arrive roughly in order)."""

    def __init__(self) -> None:
        self._heads: dict[int, str] = {}

    def __call__(self, t: float) -> str:
        seconds, nanos = split_time(t)
        minute = seconds // 60
        head = self._heads.get(minute)
        if head is None:
            if len(self._heads) > 4096:
                self._heads.clear()
            head = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:")
            self._heads[minute] = head
        if nanos % 1000:
            return f"{head}{seconds - minute * 60:02d}.{nanos:09d}+00:00"
        return f"{head}{seconds - minute * 60:02d}{format_fraction(nanos)}+00:00"


@functools.cache
def _snr_json(snr: float) -> str:
    return ',"snr":' + format_f32(snr)


def _uplink_id(uplink_id: int) -> str:
    return ',"uplinkId":' + str(uplink_id) if uplink_id else ""


def _set_time(stamp: Any, t: float) -> None:
    stamp.seconds, stamp.nanos = split_time(t)


def _object_json(value: Any) -> str:
    """A ``google.protobuf.Struct`` value as pbjson writes it: keys sorted, numbers as doubles."""
    if isinstance(value, Mapping):
        return "{" + ",".join(json_string(k) + ":" + _object_json(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format_f64(float(value))
    if isinstance(value, str):
        return json_string(value)
    if value is None:
        return "null"
    return "[" + ",".join(_object_json(v) for v in value) + "]"


@dataclass(frozen=True, slots=True)
class _DeviceParts:
    topic_prefix: str
    device_info_json: str
    device_info: Any  # integration.DeviceInfo


@dataclass(frozen=True, slots=True)
class _GatewayParts:
    gateway_id: str
    head_json: str
    location_json: str
    gnss: bool
    location: Any  # common.Location


class EventRenderer:
    """Builds the MQTT topic and body of each event type for the devices of one fleet."""

    def __init__(self, fleet: Fleet) -> None:
        self._stamp = _Stamps()
        self._devices = [self._device_parts(fleet, d) for d in fleet.devices]
        self._gateways = []
        for g in fleet.gateways:
            location = common.Location(latitude=g.lat, longitude=g.lon, altitude=g.altitude)
            self._gateways.append(
                _GatewayParts(
                    gateway_id=g.gateway_id,
                    head_json='{"gatewayId":"' + g.gateway_id + '"',
                    location_json=',"location":' + render(location, json=True).decode(),
                    gnss=g.gnss,
                    location=location,
                )
            )

    @staticmethod
    def _device_parts(fleet: Fleet, device: Device) -> _DeviceParts:
        info = integration.DeviceInfo(
            tenant_id=fleet.tenant_id,
            tenant_name=fleet.tenant_name,
            application_id=device.application_id,
            application_name=device.application_name,
            device_profile_id=device.device_profile_id,
            device_profile_name=device.device_profile_name,
            device_name=device.name,
            dev_eui=device.dev_eui,
            device_class_enabled=common.DeviceClass.Value(device.device_class),
            tags=dict(device.tags),
        )
        return _DeviceParts(
            topic_prefix=f"application/{device.application_id}/device/{device.dev_eui}/event/",
            device_info_json=render(info, json=True).decode(),
            device_info=info,
        )

    def topic(self, index: int, event: str) -> str:
        return self._devices[index].topic_prefix + event

    def time_of(self, t: float, frames: Sequence[RxFrame]) -> float:
        """The event ``time`` ChirpStack picks: the first GNSS gateway's time, else its own clock."""
        for frame in frames:
            if self._gateways[frame.gateway].gnss:
                return t
        return min(f.ns_time for f in frames) + 0.2  # after the 200 ms de-duplication window

    # --- up --------------------------------------------------------------------------------------------

    def uplink(
        self,
        index: int,
        encoding: Encoding,
        *,
        deduplication_id: str,
        t: float,
        dev_addr: str,
        dr: int,
        f_cnt: int,
        f_port: int,
        confirmed: bool,
        data: bytes,
        obj: Mapping[str, Any] | None,
        frames: Sequence[RxFrame],
        frequency: int,
        spreading_factor: int,
    ) -> bytes:
        if encoding == "protobuf":
            message = self._uplink_message(
                index, deduplication_id, t, dev_addr, dr, f_cnt, f_port, confirmed, data, obj, frames,
                frequency, spreading_factor,
            )  # fmt: skip
            return bytes(message.SerializeToString())
        stamp = self._stamp
        at = stamp(t)
        gnss_part = ""
        channel = frames[0].channel if frames else 0
        # All gateways hear the frame on the same channel.
        radio_part = (',"channel":' + str(channel) if channel else "") + (
            ',"rfChain":1' if channel >= 4 else ""
        )
        rx = []
        for f in frames:
            g = self._gateways[f.gateway]
            if g.gnss:
                if not gnss_part:
                    seconds, nanos = split_time(t)
                    gps = seconds - _GPS_EPOCH_UNIX + _GPS_LEAP_SECONDS
                    gnss_part = f',"timeSinceGpsEpoch":"{gps}{format_fraction(nanos)}s"'
                times = f',"gwTime":"{at}","nsTime":"{stamp(f.ns_time)}"{gnss_part}'
            else:
                times = f',"nsTime":"{stamp(f.ns_time)}"'
            snr = f.snr
            rx.append(
                f'{g.head_json}{_uplink_id(f.uplink_id)}{times},"rssi":{f.rssi}'
                f'{_snr_json(snr) if snr else ""}{radio_part}{g.location_json}'
                f',"context":"{b2a_base64(f.context, newline=False).decode()}","crcStatus":"CRC_OK"}}'
            )
        event_time = at if gnss_part else stamp(self.time_of(t, frames))
        obj_part = "" if obj is None else ',"object":' + _object_json(obj)
        return (
            f'{{"deduplicationId":"{deduplication_id}","time":"{event_time}",'
            f'"deviceInfo":{self._devices[index].device_info_json},"devAddr":"{dev_addr}","adr":true,'
            f'"dr":{dr},"fCnt":{f_cnt},"fPort":{f_port},"confirmed":{"true" if confirmed else "false"},'
            f'"data":"{b2a_base64(data, newline=False).decode()}"{obj_part},"rxInfo":[{",".join(rx)}],'
            f'"txInfo":{{"frequency":{frequency},"modulation":{{"lora":{{"bandwidth":{BANDWIDTH_HZ},'
            f'"spreadingFactor":{spreading_factor},"codeRate":"CR_4_5"}}}}}},'
            f'"regionConfigId":"{REGION_CONFIG_ID}"}}'
        ).encode()

    def _uplink_message(
        self,
        index: int,
        deduplication_id: str,
        t: float,
        dev_addr: str,
        dr: int,
        f_cnt: int,
        f_port: int,
        confirmed: bool,
        data: bytes,
        obj: Mapping[str, Any] | None,
        frames: Sequence[RxFrame],
        frequency: int,
        spreading_factor: int,
    ) -> Any:
        event = integration.UplinkEvent(
            deduplication_id=deduplication_id,
            dev_addr=dev_addr,
            adr=True,
            dr=dr,
            f_cnt=f_cnt,
            f_port=f_port,
            confirmed=confirmed,
            data=data,
            region_config_id=REGION_CONFIG_ID,
        )
        _set_time(event.time, self.time_of(t, frames))
        event.device_info.CopyFrom(self._devices[index].device_info)
        if obj is not None:
            event.object.update(obj)
        for f in frames:
            g = self._gateways[f.gateway]
            rx = event.rx_info.add(
                gateway_id=g.gateway_id,
                uplink_id=f.uplink_id,
                rssi=f.rssi,
                snr=f.snr,
                channel=f.channel,
                rf_chain=1 if f.channel >= 4 else 0,
                context=f.context,
                crc_status=gw.CRC_OK,
            )
            if g.gnss:
                _set_time(rx.gw_time, t)
                seconds, nanos = split_time(t)
                rx.time_since_gps_epoch.seconds = seconds - _GPS_EPOCH_UNIX + _GPS_LEAP_SECONDS
                rx.time_since_gps_epoch.nanos = nanos
            _set_time(rx.ns_time, f.ns_time)
            rx.location.CopyFrom(g.location)
        event.tx_info.frequency = frequency
        lora = event.tx_info.modulation.lora
        lora.bandwidth = BANDWIDTH_HZ
        lora.spreading_factor = spreading_factor
        lora.code_rate = gw.CR_4_5
        return event

    # --- the rarer events: real messages through the generic renderer ------------------------------------

    def join(
        self, index: int, encoding: Encoding, *, deduplication_id: str, t: float, dev_addr: str
    ) -> bytes:
        event = integration.JoinEvent(
            deduplication_id=deduplication_id, dev_addr=dev_addr, region_config_id=REGION_CONFIG_ID
        )
        return self._finish(event, index, t, encoding)

    def status(
        self,
        index: int,
        encoding: Encoding,
        *,
        deduplication_id: str,
        t: float,
        margin: int,
        external_power: bool,
        battery_level: float,
    ) -> bytes:
        event = integration.StatusEvent(
            deduplication_id=deduplication_id,
            margin=margin,
            external_power_source=external_power,
            battery_level_unavailable=False,
            battery_level=battery_level,
        )
        return self._finish(event, index, t, encoding)

    def log(
        self,
        index: int,
        encoding: Encoding,
        *,
        t: float,
        level: str,
        code: str,
        description: str,
        context: Mapping[str, str],
    ) -> bytes:
        event = integration.LogEvent(
            level=integration.LogLevel.Value(level),
            code=integration.LogCode.Value(code),
            description=description,
            context=dict(context),
        )
        return self._finish(event, index, t, encoding)

    def txack(
        self,
        index: int,
        encoding: Encoding,
        *,
        t: float,
        downlink_id: int,
        queue_item_id: str,
        f_cnt_down: int,
        gateway: int,
        frequency: int,
        spreading_factor: int,
        context: bytes,
    ) -> bytes:
        event = integration.TxAckEvent(
            downlink_id=downlink_id,
            queue_item_id=queue_item_id,
            f_cnt_down=f_cnt_down,
            gateway_id=self._gateways[gateway].gateway_id,
        )
        tx = event.tx_info
        tx.frequency = frequency
        tx.power = 16  # AS923 max EIRP
        lora = tx.modulation.lora
        lora.bandwidth = BANDWIDTH_HZ
        lora.spreading_factor = spreading_factor
        lora.code_rate = gw.CR_4_5
        lora.polarization_inversion = True
        tx.timing.immediately.SetInParent()  # class C: sent as soon as the gateway can
        tx.context = context
        return self._finish(event, index, t, encoding)

    def ack(
        self,
        index: int,
        encoding: Encoding,
        *,
        deduplication_id: str,
        t: float,
        queue_item_id: str,
        acknowledged: bool,
        f_cnt_down: int,
    ) -> bytes:
        event = integration.AckEvent(
            deduplication_id=deduplication_id,
            queue_item_id=queue_item_id,
            acknowledged=acknowledged,
            f_cnt_down=f_cnt_down,
        )
        return self._finish(event, index, t, encoding)

    def _finish(self, event: Any, index: int, t: float, encoding: Encoding) -> bytes:
        _set_time(event.time, t)
        parts = self._devices[index]
        if encoding == "json":
            return render_json(event, fragments={"device_info": parts.device_info_json})
        event.device_info.CopyFrom(parts.device_info)
        return bytes(event.SerializeToString())
