"""Test support: ChirpStack events built with the chirpstack-api classes, in either encoding."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from chirpstack_api import common, gw, integration
from google.protobuf import json_format

__all__ = ["malformed", "uplink"]


def uplink(
    dev_eui: str,
    f_cnt: int,
    data: bytes,
    *,
    encoding: str = "json",
    codec: str = "cayenne-lpp",
    when: datetime | None = None,
    gateway: str = "0016c001f153a14c",
    dedup: str | None = None,
    rssi: int = -90,
    snr: float = 5.5,
) -> tuple[str, bytes]:
    """(topic, payload) of one uplink event as ChirpStack would publish it."""
    event = integration.UplinkEvent(
        deduplication_id=dedup or str(uuid.uuid4()),
        dev_addr="01020304",
        f_cnt=f_cnt,
        f_port=2,
        dr=5,
        data=data,
        device_info=integration.DeviceInfo(
            tenant_id="52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
            application_id="8b1e7f2a-3c4d-4e5f-9a6b-7c8d9e0f1a2b",
            device_profile_id="c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
            dev_eui=dev_eui,
            device_name=f"sensor-{dev_eui[-4:]}",
            tags={"codec": codec, "kind": "temp_humidity"},
        ),
        rx_info=[gw.UplinkRxInfo(gateway_id=gateway, rssi=rssi, snr=snr,
                                 location=common.Location(latitude=16.06, longitude=108.22))],
        tx_info=gw.UplinkTxInfo(
            frequency=923200000,
            modulation=gw.Modulation(lora=gw.LoraModulationInfo(bandwidth=125000, spreading_factor=9)),
        ),
        region_config_id="as923_2",
    )
    event.time.FromDatetime(when or datetime.now(UTC))
    topic = f"application/8b1e7f2a-3c4d-4e5f-9a6b-7c8d9e0f1a2b/device/{dev_eui}/event/up"
    if encoding == "json":
        return topic, json_format.MessageToJson(event, indent=None).encode()
    return topic, event.SerializeToString()


def malformed(i: int) -> tuple[str, bytes]:
    return f"application/x/device/{i:016x}/event/up", b'{"deduplicationId": "broken'
