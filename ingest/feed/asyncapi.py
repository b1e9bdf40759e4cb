"""The open feed's AsyncAPI 3.0 document, generated from the code that builds the payloads.

``ioc feed asyncapi`` writes it to docs/asyncapi.yaml, and a test fails when the committed file is stale.
The examples in it are built by the feed's own functions, and the tests validate them against the schemas.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel

from ingest.feed.payloads import (
    DEFAULT_PREFIX,
    DeviceStatus,
    FeedDevice,
    HealthCounts,
    KeyValue,
    SenMLPacker,
    ZoneSummary,
    senml_schemas,
    status_event,
)
from ioc_core.kinds import KINDS
from ioc_core.metrics import VOCABULARY
from operations import cap
from operations.warnings import IncidentFacts, ZoneFacts, default_info, message, topic

__all__ = ["asyncapi_document", "example_payloads", "render_yaml"]

_REF = "#/components/schemas/"
_WHEN = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def _example_device(prefix: str) -> FeedDevice:
    device = FeedDevice.of(prefix, 1, "70b3d5e75e000a01", "Cầu Rồng water level", "water_level", "hai-chau",
                           "Hải Châu", 16.0611, 108.2272)
    assert device is not None
    return device


def example_payloads(prefix: str = DEFAULT_PREFIX) -> dict[str, tuple[str, Any]]:
    """Message name → (topic, payload as JSON data), each built the way the feed builds it."""
    device = _example_device(prefix)
    reading = SenMLPacker().pack(device, _WHEN.timestamp(), [
        (VOCABULARY["water_level"].id, 1.42), (VOCABULARY["battery_voltage"].id, 3.61),
    ])
    status = DeviceStatus(
        dev_eui=device.dev_eui, name=device.name, kind=device.kind, zone=device.zone, health="late",
        previous="reporting", event=status_event("reporting", "late"), last_seen=_WHEN,
        expected_interval_s=KINDS["water_level"].interval_s, time=datetime(2026, 3, 14, 9, 37, 0, tzinfo=UTC),
    )
    summary = ZoneSummary(
        zone="hai-chau", name="Hải Châu", level="district", parent=None,
        time=datetime(2026, 3, 14, 9, 37, 0, tzinfo=UTC),
        devices=HealthCounts(reporting=41, late=2, silent=1, never_seen=0, total=44), uplinks_last_hour=512,
        key_values=[
            KeyValue(metric="water_level", unit="m", aggregate="max", value=1.42, samples=12,
                     hour=datetime(2026, 3, 14, 9, tzinfo=UTC)),
            KeyValue(metric="pm2_5", unit="ug/m3", aggregate="mean", value=23.5, samples=36,
                     hour=datetime(2026, 3, 14, 9, tzinfo=UTC)),
        ],
    )
    return {
        "reading": (device.topic, json.loads(reading)),
        "status": (f"{prefix}/{device.zone}/_status/{device.dev_eui}", json.loads(status.model_dump_json())),
        "summary": (f"{prefix}/hai-chau/_summary", json.loads(summary.model_dump_json())),
        "warning": (topic("hai-chau", prefix), _example_warning()),
    }


def _example_warning() -> dict[str, Any]:
    """An approved flood warning as the outbox queues it (operations.warnings.message), built by the same code."""
    incident = IncidentFacts(id=42, zone_code="hai-chau", hazard="flood", hazard_vi="Ngập lụt", hazard_en="Flood",
                             severity="major", state="new")
    zones = [ZoneFacts("hai-chau", "Hải Châu", "district", None, "danger")]
    info = default_info(incident, zones)
    ring = ((108.206, 16.06), (108.2, 16.05), (108.232, 16.03), (108.226, 16.095), (108.206, 16.06))
    alert = cap.Alert(identifier="vn.gov.danang.ioc.2026.w7", sender="ioc@danang.gov.vn", sent=_WHEN,
                      msg_type="Alert", info=info, areas=(cap.Area("Hải Châu", (ring,), "hai-chau"),),
                      incidents="incident-42")
    xml = cap.to_xml(alert, ZoneInfo("Asia/Ho_Chi_Minh"))
    return message(cap.summary(xml), xml, info).payload()


def _warning_schemas() -> dict[str, Any]:
    text = {"type": ["string", "null"]}
    info = {
        "type": "object",
        "description": "One CAP <info> block: one in vi-VN, one in en-US.",
        "required": ["language", "category", "event", "urgency", "severity", "certainty", "headline",
                     "description", "instruction", "areas"],
        "properties": {
            "language": {"enum": ["vi-VN", "en-US"]},
            "category": {"type": "array", "items": {"enum": list(cap.CATEGORIES)}},
            "event": text,
            "response_type": {"type": "array", "items": {"enum": list(cap.RESPONSE_TYPES)}},
            "urgency": {"enum": list(cap.URGENCIES)},
            "severity": {"enum": list(cap.SEVERITIES)},
            "certainty": {"enum": list(cap.CERTAINTIES)},
            "sender_name": text,
            "headline": text,
            "description": text,
            "instruction": text,
            "areas": {"type": "array", "items": {
                "type": "object", "required": ["description", "zone"], "additionalProperties": False,
                "properties": {"description": {**text, "description": "areaDesc: the zone's Vietnamese name"},
                               "zone": {**text, "description": "the zone's code"}}}},
        },
        "additionalProperties": False,
    }
    warning = {
        "type": "object",
        "description": "A CAP 1.2 message in JSON; the polygons of its areas are in `data.cap_xml`.",
        "required": ["identifier", "sender", "sent", "status", "msg_type", "scope", "references", "info"],
        "properties": {
            "identifier": {"type": "string"},
            "sender": {"type": "string"},
            "sent": {"type": "string", "description": "local time with its offset, e.g. 2026-03-14T16:26:53+07:00"},
            "status": {"enum": ["Actual", "Exercise", "System", "Test", "Draft"]},
            "msg_type": {"enum": list(cap.MSG_TYPES)},
            "scope": {"const": "Public"},
            "references": {"type": "array", "items": {"type": "string"},
                           "description": "sender,identifier,sent of each earlier message an Update or Cancel "
                                          "replaces"},
            "incidents": text,
            "info": {"type": "array", "items": {"$ref": _REF + "WarningInfo"}},
        },
        "additionalProperties": False,
    }
    outgoing = {
        "type": "object",
        "description": "An approved public warning as every channel gets it.",
        "required": ["key", "event", "subject", "text", "body", "data"],
        "properties": {
            "key": {"type": "string", "pattern": "^warning:",
                    "description": "warning:<CAP identifier>; a message delivered again after a crash has the "
                                   "same key"},
            "event": {"const": "warning"},
            "subject": {"type": "string"},
            "text": {"type": "string", "maxLength": 400, "description": "the short Vietnamese form (SMS, Zalo)"},
            "body": {"type": "string", "description": "the long form, Vietnamese then English"},
            "data": {
                "type": "object", "required": ["warning", "cap_xml"],
                "properties": {
                    "warning": {"$ref": _REF + "Warning"},
                    "cap_xml": {"type": "string", "contentMediaType": "application/cap+xml",
                                "description": "the CAP 1.2 message as issued, with the area polygons"},
                },
            },
        },
    }
    return {"WarningMessage": outgoing, "Warning": warning, "WarningInfo": info}


def _model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """Draft-07 schemas of pydantic models for components.schemas, with references rewritten to point there."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=_REF + "{model}", mode="serialization")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def asyncapi_document(prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    examples = example_payloads(prefix)
    kinds = sorted(KINDS)
    parameters = {
        "zone": {"description": "code of the device's zone (a district, or a ward once wards are imported), "
                                "lower-case letters, digits and '-'", "examples": ["hai-chau", "son-tra"]},
        "kind": {"description": "what the device measures", "enum": kinds},
        "dev_eui": {"description": "the device's LoRaWAN DevEUI, 16 lower-case hex digits",
                    "examples": ["70b3d5e75e000a01"]},
    }

    def operation(channel: str, message: str, summary: str, qos: int) -> dict[str, Any]:
        return {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
            "bindings": {"mqtt": {"qos": qos, "retain": True, "bindingVersion": "0.2.0"}},
        }

    def message(name: str, title: str, summary: str, content_type: str, schema: str) -> dict[str, Any]:
        topic, payload = examples[name]
        return {
            "name": name,
            "title": title,
            "summary": summary,
            "contentType": content_type,
            "payload": {"$ref": _REF + schema},
            "examples": [{"name": f"{name}-example", "summary": f"on {topic}", "payload": payload}],
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "IOC open data feed",
            "version": "1.0.0",
            "description": (
                "Live readings of the city's public sensors over MQTT, read-only. Every reading the platform "
                "stores is published, retained, as a SenML pack (RFC 8428) on "
                f"`{prefix}/{{zone}}/{{kind}}/{{dev_eui}}`, so a new subscriber gets each device's latest reading "
                "at once; device health changes go to `.../{zone}/_status/{dev_eui}` and zone summaries to "
                "`.../{zone}/_summary`, both retained; public warnings (CAP 1.2), once a second operator approved "
                "them, to `.../{zone}/_warning`, retained: the newest Alert, Update or Cancel of each ward and "
                "district. Subscribe to `" + prefix + "/#` for everything, or narrow it "
                "with wildcards (`" + prefix + "/+/water_level/#`). Devices their owners mark private, and devices "
                "not in the registry, are never published. Credentials: `POST /api/v1/mqtt/credentials` of the "
                "IOC API with a developer key. Generated by `ioc feed asyncapi`; do not edit."
            ),
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "city": {
                "host": "{host}:8883",
                "protocol": "secure-mqtt",
                "protocolVersion": "5",
                "description": "the city's broker (MQTT 3.1.1 or 5 over TLS); a developer account may read "
                               f"`{prefix}/#` only",
                "variables": {"host": {"description": "the broker's host name, as the city publishes it",
                                       "default": "mqtt.example.org"}},
                "security": [{"$ref": "#/components/securitySchemes/developerAccount"}],
            },
            "local": {
                "host": "127.0.0.1:1883",
                "protocol": "mqtt",
                "description": "the broker `ioc demo` starts (no TLS, no accounts)",
            },
        },
        "channels": {
            "reading": {
                "address": f"{prefix}/{{zone}}/{{kind}}/{{dev_eui}}",
                "title": "Readings",
                "description": "A device's readings as they are stored, with its name, kind, zone and position. "
                               "Retained: the latest reading per device. Only good values (in the metric's valid "
                               "range); a reading older than the retained one is published without the retain "
                               "flag. The topic's retained message is cleared when the device leaves the feed.",
                "parameters": {name: parameters[name] for name in ("zone", "kind", "dev_eui")},
                "messages": {"reading": {"$ref": "#/components/messages/reading"}},
            },
            "status": {
                "address": f"{prefix}/{{zone}}/_status/{{dev_eui}}",
                "title": "Device status",
                "description": "A device's health when it changes (late, silent, back) and when the feed starts. "
                               "Retained: the current health per device.",
                "parameters": {name: parameters[name] for name in ("zone", "dev_eui")},
                "messages": {"status": {"$ref": "#/components/messages/status"}},
            },
            "summary": {
                "address": f"{prefix}/{{zone}}/_summary",
                "title": "Zone summaries",
                "description": "Each zone's public devices by health, their uplinks in the last hour and the zone's "
                               "key values, every 30 s by default. Retained.",
                "parameters": {"zone": parameters["zone"]},
                "messages": {"summary": {"$ref": "#/components/messages/summary"}},
            },
            "warning": {
                "address": f"{prefix}/{{zone}}/_warning",
                "title": "Public warnings",
                "description": "Public warnings (OASIS CAP 1.2) of the operations centre, published when a second "
                               "operator approves them, on the topic of each ward they cover and of its "
                               "district. Retained: the newest message per zone; an Update or Cancel replaces it "
                               "and references the earlier message. The same messages are served without a key "
                               "by the IOC API at `/api/v1/public/warnings` (JSON), "
                               "`/api/v1/public/warnings.atom` (Atom) and "
                               "`/api/v1/public/warnings/{identifier}.xml` (CAP XML).",
                "parameters": {"zone": parameters["zone"]},
                "messages": {"warning": {"$ref": "#/components/messages/warning"}},
            },
        },
        "operations": {
            "publishReading": operation("reading", "reading", "A stored reading of a public device.", 0),
            "publishStatus": operation("status", "status", "A device's health changed.", 1),
            "publishSummary": operation("summary", "summary", "A zone's summary.", 1),
            "publishWarning": operation("warning", "warning", "A public warning was approved.", 1),
        },
        "components": {
            "messages": {
                "reading": message("reading", "Reading", "A device's measurements as a SenML pack.",
                                   "application/senml+json", "SenMLPack"),
                "status": message("status", "Device status", "A device's health.", "application/json",
                                  "DeviceStatus"),
                "summary": message("summary", "Zone summary", "A zone at a glance.", "application/json",
                                   "ZoneSummary"),
                "warning": message("warning", "Public warning", "A CAP 1.2 warning, as JSON and as its XML.",
                                   "application/json", "WarningMessage"),
            },
            "schemas": {**senml_schemas(_REF), **_model_schemas(DeviceStatus, ZoneSummary), **_warning_schemas()},
            "securitySchemes": {
                "developerAccount": {
                    "type": "userPassword",
                    "description": "MQTT username and password of a developer account, from the IOC API's "
                                   "`POST /api/v1/mqtt/credentials` (a developer API key); the password is shown "
                                   "once.",
                },
            },
        },
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # shared parameter objects are written out in full: no &id001 anchors for readers


def render_yaml(document: dict[str, Any]) -> str:
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110,
                     default_flow_style=False)
    return "# Generated by `ioc feed asyncapi` from ingest/feed/asyncapi.py: do not edit.\n" + text
