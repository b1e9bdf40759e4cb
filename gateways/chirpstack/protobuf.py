"""ChirpStack v4 integration events in binary protobuf (``json=false``) turned into the structs of ``events``.

One converter per event type, named in the table of ``gateways.chirpstack.event_types``; enums become their
names and timestamps UTC datetimes, as the JSON encoding gives them. A value the structs cannot hold (a
timestamp outside ``datetime``'s range) raises, and the parser turns that into an ``EventParseError``.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from gateways.chirpstack.events import (
    AckEvent,
    DeviceInfo,
    EventParseError,
    JoinEvent,
    Location,
    LocationEvent,
    LogEvent,
    LoraModulation,
    Modulation,
    RxInfo,
    StatusEvent,
    TxAckEvent,
    TxInfo,
    UplinkEvent,
)

__all__ = ["ack_event", "join_event", "location_event", "log_event", "status_event", "txack_event", "uplink_event"]


def _uuid(text: str) -> uuid.UUID | None:
    if not text:
        return None
    try:
        return uuid.UUID(text)
    except ValueError as err:
        raise EventParseError(f"deduplicationId {text!r} is not a UUID") from err


def _ts(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp = getattr(message, field)
    return datetime.fromtimestamp(stamp.seconds, UTC).replace(microsecond=stamp.nanos // 1000)


def _device_info(message: Any) -> DeviceInfo | None:
    if not message.HasField("device_info"):
        return None
    d = message.device_info
    return DeviceInfo(
        dev_eui=d.dev_eui,
        device_name=d.device_name,
        tenant_id=d.tenant_id,
        tenant_name=d.tenant_name,
        application_id=d.application_id,
        application_name=d.application_name,
        device_profile_id=d.device_profile_id,
        device_profile_name=d.device_profile_name,
        device_class_enabled=_enum_name(d, "device_class_enabled"),
        tags=dict(d.tags),
    )


def _enum_name(message: Any, field: str) -> str:
    descriptor = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(message, field)
    enum_value = descriptor.values_by_number.get(value)
    return str(enum_value.name) if enum_value else str(value)


def _location(message: Any) -> Location:
    return Location(
        latitude=message.latitude,
        longitude=message.longitude,
        altitude=message.altitude,
        source=_enum_name(message, "source"),
        accuracy=message.accuracy,
    )


def uplink_event(m: Any) -> UplinkEvent:
    lora = m.tx_info.modulation.lora if m.tx_info.modulation.HasField("lora") else None
    return UplinkEvent(
        deduplication_id=_uuid(m.deduplication_id),
        time=_ts(m, "time"),
        device_info=_device_info(m),
        dev_addr=m.dev_addr,
        adr=m.adr,
        dr=m.dr,
        f_cnt=m.f_cnt,
        f_port=m.f_port,
        confirmed=m.confirmed,
        data=base64.b64encode(m.data).decode("ascii"),
        object=json_format.MessageToDict(m.object) if m.HasField("object") else None,
        rx_info=[
            RxInfo(
                gateway_id=rx.gateway_id,
                rssi=rx.rssi,
                snr=rx.snr,
                channel=rx.channel,
                location=_location(rx.location) if rx.HasField("location") else None,
                crc_status=_enum_name(rx, "crc_status"),
            )
            for rx in m.rx_info
        ],
        tx_info=TxInfo(
            frequency=m.tx_info.frequency,
            modulation=Modulation(
                lora=LoraModulation(
                    bandwidth=lora.bandwidth,
                    spreading_factor=lora.spreading_factor,
                    code_rate=_enum_name(lora, "code_rate"),
                )
                if lora is not None
                else None
            ),
        )
        if m.HasField("tx_info")
        else None,
        join_server_context=json_format.MessageToDict(m.join_server_context)
        if m.HasField("join_server_context")
        else None,
        region_config_id=m.region_config_id,
    )


def join_event(m: Any) -> JoinEvent:
    return JoinEvent(
        deduplication_id=_uuid(m.deduplication_id),
        time=_ts(m, "time"),
        device_info=_device_info(m),
        dev_addr=m.dev_addr,
        region_config_id=m.region_config_id,
    )


def status_event(m: Any) -> StatusEvent:
    return StatusEvent(
        deduplication_id=_uuid(m.deduplication_id),
        time=_ts(m, "time"),
        device_info=_device_info(m),
        margin=m.margin,
        external_power_source=m.external_power_source,
        battery_level_unavailable=m.battery_level_unavailable,
        battery_level=m.battery_level,
    )


def ack_event(m: Any) -> AckEvent:
    return AckEvent(
        deduplication_id=_uuid(m.deduplication_id),
        time=_ts(m, "time"),
        device_info=_device_info(m),
        queue_item_id=m.queue_item_id,
        acknowledged=m.acknowledged,
        f_cnt_down=m.f_cnt_down,
    )


def txack_event(m: Any) -> TxAckEvent:
    return TxAckEvent(
        downlink_id=m.downlink_id,
        time=_ts(m, "time"),
        device_info=_device_info(m),
        queue_item_id=m.queue_item_id,
        f_cnt_down=m.f_cnt_down,
        gateway_id=m.gateway_id,
    )


def log_event(m: Any) -> LogEvent:
    return LogEvent(
        time=_ts(m, "time"),
        device_info=_device_info(m),
        level=_enum_name(m, "level"),
        code=_enum_name(m, "code"),
        description=m.description,
        context=dict(m.context),
    )


def location_event(m: Any) -> LocationEvent:
    return LocationEvent(
        deduplication_id=_uuid(m.deduplication_id),
        time=_ts(m, "time"),
        device_info=_device_info(m),
        location=_location(m.location) if m.HasField("location") else None,
    )

