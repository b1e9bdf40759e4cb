"""OASIS CAP 1.2 messages: a public warning as the XML the standard defines, built without I/O.

The XSD fixes element order, enumerations and the ``sent`` pattern (an offset, never ``Z``, no fractions); the
rules it cannot express are checked here before anything is written: identifier and sender without spaces,
commas, ``&`` or ``<``; polygons of at least four ``lat,lon`` pairs whose first and last pairs are the same;
references as ``sender,identifier,sent`` triples. A message is immutable once sent: an Update or Cancel is a new
message that references the earlier ones (``Reference``), read back from their frozen XML by ``references_of``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal, get_args

from ioc_core.errors import Invalid

__all__ = [
    "CAP_NS",
    "CATEGORIES",
    "CERTAINTIES",
    "MSG_TYPES",
    "RESPONSE_TYPES",
    "SEVERITIES",
    "URGENCIES",
    "Alert",
    "Area",
    "Category",
    "Certainty",
    "Info",
    "MsgType",
    "Reference",
    "ResponseType",
    "Ring",
    "Severity",
    "Urgency",
    "cap_time",
    "polygon_text",
    "references_of",
    "summary",
    "to_xml",
]

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"

MsgType = Literal["Alert", "Update", "Cancel"]
Category = Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
                   "CBRNE", "Other"]
ResponseType = Literal["Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear",
                       "None"]
Urgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]
Severity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely", "Unknown"]

MSG_TYPES: tuple[str, ...] = get_args(MsgType)
CATEGORIES: tuple[str, ...] = get_args(Category)
RESPONSE_TYPES: tuple[str, ...] = get_args(ResponseType)
URGENCIES: tuple[str, ...] = get_args(Urgency)
SEVERITIES: tuple[str, ...] = get_args(Severity)
CERTAINTIES: tuple[str, ...] = get_args(Certainty)

Ring = tuple[tuple[float, float], ...]
"""An outer ring as GeoJSON has it: (longitude, latitude) pairs."""

_TOKEN = re.compile(r"^[^\s,&<]+$")  # CAP 1.2 §3.2.1: identifier and sender
_SENT = re.compile(r"^\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")
_DIGITS = 5  # about a metre: enough for a ward, and keeps the feed small


def _token(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise Invalid(f"a CAP {what} must not be empty or hold spaces, commas, '&' or '<': {value!r}", field=what)
    return value


def cap_time(at: datetime, zone: tzinfo) -> str:
    """``at`` as CAP writes times: local time with its offset, whole seconds (``2026-10-28T14:05:00+07:00``)."""
    if at.tzinfo is None:
        raise ValueError("a CAP time needs a time zone")
    return at.astimezone(zone).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Reference:
    """An earlier message an Update or Cancel refers to."""

    sender: str
    identifier: str
    sent: str

    def text(self) -> str:
        return f"{self.sender},{self.identifier},{self.sent}"


def polygon_text(ring: Ring) -> str:
    """A CAP polygon: ``lat,lon`` pairs separated by spaces, closed, at least four pairs (CAP 1.2 §3.2.4)."""
    points = [(round(lat, _DIGITS), round(lon, _DIGITS)) for lon, lat in ring]
    if points and points[0] != points[-1]:
        points.append(points[0])
    if len(points) < 4:
        raise Invalid(f"a CAP polygon needs at least 4 closed coordinate pairs, got {len(points)}", field="zones")
    for lat, lon in points:
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise Invalid(f"({lat}, {lon}) is not a WGS 84 coordinate", field="zones")
    return " ".join(f"{lat:g},{lon:g}" for lat, lon in points)


@dataclass(frozen=True, slots=True)
class Area:
    """A zone the warning covers: its name (``areaDesc``), outer rings, and the platform's zone code."""

    description: str
    rings: tuple[Ring, ...]
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Info:
    """One ``<info>`` block, in one language; every block carries the same areas."""

    language: str
    category: tuple[Category, ...]
    event: str
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    headline: str
    description: str
    instruction: str
    response_type: tuple[ResponseType, ...] = ()
    sender_name: str | None = None
    web: str | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """A whole CAP message; ``scope`` is always Public here (public warnings are all this platform issues)."""

    identifier: str
    sender: str
    sent: datetime
    msg_type: MsgType
    info: tuple[Info, ...]
    areas: tuple[Area, ...]
    references: tuple[Reference, ...] = ()
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"] = "Actual"
    incidents: str | None = None
    note: str | None = None
    source: str | None = None


def _el(parent: ET.Element, tag: str, text: str) -> ET.Element:
    child = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    child.text = text
    return child


def _check(alert: Alert) -> None:
    _token(alert.identifier, "identifier")
    _token(alert.sender, "sender")
    if alert.msg_type == "Alert" and alert.references:
        raise Invalid("an Alert references no earlier message; an Update or Cancel does", field="references")
    if alert.msg_type != "Alert" and not alert.references:
        raise Invalid(f"a CAP {alert.msg_type} must reference the message it updates or cancels",
                      field="references")
    for ref in alert.references:
        _token(ref.sender, "sender")
        _token(ref.identifier, "identifier")
        if not _SENT.match(ref.sent):
            raise Invalid(f"a reference's sent time {ref.sent!r} is not a CAP time", field="references")
        if ref.identifier == alert.identifier:
            raise Invalid("a CAP message cannot reference itself", field="references")
    if not alert.info:
        raise Invalid("a public warning needs at least one info block", field="info")
    if not alert.areas:
        raise Invalid("a public warning needs at least one area", field="zones")


def to_xml(alert: Alert, zone: tzinfo) -> str:
    """The CAP 1.2 XML of ``alert``, times written in ``zone``; Invalid for what the XSD cannot catch."""
    _check(alert)
    root = ET.Element(f"{{{CAP_NS}}}alert")
    _el(root, "identifier", alert.identifier)
    _el(root, "sender", alert.sender)
    _el(root, "sent", cap_time(alert.sent, zone))
    _el(root, "status", alert.status)
    _el(root, "msgType", alert.msg_type)
    if alert.source:
        _el(root, "source", alert.source)
    _el(root, "scope", "Public")
    if alert.note:
        _el(root, "note", alert.note)
    if alert.references:
        _el(root, "references", " ".join(ref.text() for ref in alert.references))
    if alert.incidents:
        _el(root, "incidents", alert.incidents)
    polygons = [[polygon_text(ring) for ring in area.rings] for area in alert.areas]
    for info in alert.info:
        block = ET.SubElement(root, f"{{{CAP_NS}}}info")
        _el(block, "language", info.language)
        for category in info.category:
            _el(block, "category", category)
        _el(block, "event", info.event)
        for response in info.response_type:
            _el(block, "responseType", response)
        _el(block, "urgency", info.urgency)
        _el(block, "severity", info.severity)
        _el(block, "certainty", info.certainty)
        if info.sender_name:
            _el(block, "senderName", info.sender_name)
        _el(block, "headline", info.headline)
        _el(block, "description", info.description)
        _el(block, "instruction", info.instruction)
        if info.web:
            _el(block, "web", info.web)
        for area, rings in zip(alert.areas, polygons, strict=True):
            where = ET.SubElement(block, f"{{{CAP_NS}}}area")
            _el(where, "areaDesc", area.description)
            for ring in rings:
                _el(where, "polygon", ring)
            if area.code:
                code = ET.SubElement(where, f"{{{CAP_NS}}}geocode")
                _el(code, "valueName", "IOC_ZONE")
                _el(code, "value", area.code)
    body = ET.tostring(root, encoding="unicode", default_namespace=CAP_NS)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def references_of(xml: str) -> tuple[Reference, ...]:
    """What an Update or Cancel of the message ``xml`` (one this module built) must reference: the messages it
    referenced, then itself, so every still-relevant message of the chain is named (CAP 1.2 §3.2.1)."""
    root = ET.fromstring(xml)  # only our own frozen XML comes here, never input from outside

    def text(tag: str) -> str:
        found = root.find(f"{{{CAP_NS}}}{tag}")
        if found is None or not found.text:
            raise ValueError(f"the stored CAP message has no <{tag}>")
        return found.text

    earlier: list[Reference] = []
    refs = root.find(f"{{{CAP_NS}}}references")
    if refs is not None and refs.text:
        for triple in refs.text.split():
            sender, identifier, sent = triple.split(",")
            earlier.append(Reference(sender, identifier, sent))
    return (*earlier, Reference(text("sender"), text("identifier"), text("sent")))



def summary(xml: str) -> dict[str, Any]:
    """The JSON form of a message this module built: its header, references, and each info block with its
    areas' names and zone codes (polygons stay in the XML, which the JSON links to)."""
    root = ET.fromstring(xml)  # our own frozen XML only
    ns = {"cap": CAP_NS}

    def text(node: ET.Element, tag: str) -> str | None:
        found = node.find(f"cap:{tag}", ns)
        return None if found is None else found.text

    def texts(node: ET.Element, tag: str) -> list[str]:
        return [e.text or "" for e in node.findall(f"cap:{tag}", ns)]

    infos = []
    for info in root.findall("cap:info", ns):
        areas = [{"description": text(area, "areaDesc"),
                  "zone": next((text(g, "value") for g in area.findall("cap:geocode", ns)
                                if text(g, "valueName") == "IOC_ZONE"), None)}
                 for area in info.findall("cap:area", ns)]
        infos.append({"language": text(info, "language"), "category": texts(info, "category"),
                      "event": text(info, "event"), "response_type": texts(info, "responseType"),
                      "urgency": text(info, "urgency"), "severity": text(info, "severity"),
                      "certainty": text(info, "certainty"), "sender_name": text(info, "senderName"),
                      "headline": text(info, "headline"), "description": text(info, "description"),
                      "instruction": text(info, "instruction"), "areas": areas})
    refs = text(root, "references")
    return {"identifier": text(root, "identifier"), "sender": text(root, "sender"), "sent": text(root, "sent"),
            "status": text(root, "status"), "msg_type": text(root, "msgType"), "scope": text(root, "scope"),
            "references": refs.split() if refs else [], "incidents": text(root, "incidents"), "info": infos}
