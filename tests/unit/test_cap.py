"""CAP 1.2 messages built by operations.cap, validated against the OASIS schema (tests/fixtures/cap), and the
warning rules of operations.warnings: defaults from an incident, two-person approval, what may be replaced."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import xmlschema

from ioc_api.cap_feed import ATOM_NS, atom_feed
from ioc_core.errors import Conflict, Invalid, NotAllowed
from operations.cap import Alert, Area, Reference, cap_time, polygon_text, references_of, summary, to_xml
from operations.warnings import (
    IncidentFacts,
    ZoneFacts,
    cancel_info,
    check_approver,
    check_draft,
    check_replaceable,
    default_info,
    info_from_json,
    info_to_json,
    message,
    topics,
)

XSD = Path(__file__).parent.parent / "fixtures" / "cap" / "CAP-v1.2.xsd"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
SENT = datetime(2026, 10, 28, 7, 5, 0, 123456, tzinfo=UTC)
SQUARE = ((108.22, 16.06), (108.23, 16.06), (108.23, 16.07), (108.22, 16.07), (108.22, 16.06))
INCIDENT = IncidentFacts(id=7, zone_code="hai-chau", hazard="flood", hazard_vi="Ngập lụt", hazard_en="Flood",
                         severity="major", state="new")
WARDS = [ZoneFacts("hc-ward-a", "Phường A", "ward", "hai-chau", "danger"),
         ZoneFacts("hc-ward-b", "Phường B", "ward", "hai-chau", "alert")]


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD))


def _alert(msg_type: str = "Alert", references: tuple[Reference, ...] = (), **more: object) -> Alert:
    vi, en = default_info(INCIDENT, WARDS)
    fields: dict[str, object] = {
        "identifier": "vn.gov.danang.ioc.2026.w1", "sender": "ioc@danang.gov.vn", "sent": SENT,
        "msg_type": msg_type, "info": (vi, en), "references": references, "incidents": "incident-7",
        "areas": (Area("Phường A", (SQUARE,), "hc-ward-a"), Area("Phường B", (SQUARE, SQUARE), "hc-ward-b"))}
    fields.update(more)
    return Alert(**fields)  # type: ignore[arg-type]


def test_an_alert_is_valid_cap_1_2(schema: xmlschema.XMLSchema) -> None:
    xml = to_xml(_alert(), HCM)
    schema.validate(xml)
    assert "<sent>2026-10-28T14:05:00+07:00</sent>" in xml
    assert "<scope>Public</scope>" in xml and "<status>Actual</status>" in xml
    assert '<language>vi-VN</language>' in xml and '<language>en-US</language>' in xml
    assert "<areaDesc>Phường A</areaDesc>" in xml
    assert "<polygon>16.06,108.22 16.06,108.23 16.07,108.23 16.07,108.22 16.06,108.22</polygon>" in xml
    assert "references" not in xml


@pytest.mark.parametrize("msg_type", ["Update", "Cancel"])
def test_updates_and_cancels_reference_the_earlier_message(schema: xmlschema.XMLSchema, msg_type: str) -> None:
    first = to_xml(_alert(), HCM)
    refs = references_of(first)
    assert refs == (Reference("ioc@danang.gov.vn", "vn.gov.danang.ioc.2026.w1", "2026-10-28T14:05:00+07:00"),)
    info = _alert().info if msg_type == "Update" else cancel_info(_alert().info)
    second = to_xml(_alert(msg_type, refs, identifier="vn.gov.danang.ioc.2026.w2", info=info), HCM)
    schema.validate(second)
    assert ("<references>ioc@danang.gov.vn,vn.gov.danang.ioc.2026.w1,2026-10-28T14:05:00+07:00</references>"
            in second)
    # A third message of the chain names both earlier ones.
    third = references_of(second)
    assert [r.identifier for r in third] == ["vn.gov.danang.ioc.2026.w1", "vn.gov.danang.ioc.2026.w2"]
    assert summary(second)["msg_type"] == msg_type


def test_the_validator_rejects_invalid_messages(schema: xmlschema.XMLSchema) -> None:
    good = to_xml(_alert(), HCM)
    assert schema.is_valid(good)
    utc = good.replace("2026-10-28T14:05:00+07:00", "2026-10-28T07:05:00Z")
    assert not schema.is_valid(utc)  # CAP forbids the "Z" designator
    assert not schema.is_valid(good.replace("<severity>Severe</severity>", "<severity>High</severity>"))
    assert not schema.is_valid(good.replace("<scope>Public</scope>", ""))
    # Element order is part of the schema: urgency before responseType is refused.
    swapped = good.replace("<responseType>Evacuate</responseType><urgency>Immediate</urgency>",
                           "<urgency>Immediate</urgency><responseType>Evacuate</responseType>", 1)
    assert swapped != good and not schema.is_valid(swapped)


def test_rules_the_schema_cannot_check_are_refused_before_any_xml() -> None:
    with pytest.raises(Invalid) as caught:
        to_xml(_alert(identifier="has space"), HCM)
    assert caught.value.field == "identifier"
    with pytest.raises(Invalid, match="sender"):
        to_xml(_alert(sender="a,b"), HCM)
    with pytest.raises(Invalid, match="must reference"):
        to_xml(_alert("Update"), HCM)
    with pytest.raises(Invalid, match="references no earlier"):
        to_xml(_alert("Alert", (Reference("s", "i", "2026-10-28T14:05:00+07:00"),)), HCM)
    with pytest.raises(Invalid, match="itself"):
        to_xml(_alert("Cancel", (Reference("s", "vn.gov.danang.ioc.2026.w1", "2026-10-28T14:05:00+07:00"),)), HCM)
    with pytest.raises(Invalid, match="area"):
        to_xml(_alert(areas=()), HCM)


def test_polygons_are_lat_lon_closed_and_at_least_four_pairs() -> None:
    open_ring = SQUARE[:-1]
    assert polygon_text(open_ring) == polygon_text(SQUARE)  # closed for you
    assert polygon_text(SQUARE).split()[0] == "16.06,108.22"  # latitude first, unlike GeoJSON
    with pytest.raises(Invalid):
        polygon_text(((108.2, 16.0), (108.3, 16.0), (108.2, 16.0)))
    with pytest.raises(Invalid):
        polygon_text(((108.2, 96.0), (108.3, 16.0), (108.3, 16.1), (108.2, 96.0)))


def test_times_carry_an_offset_and_whole_seconds() -> None:
    assert cap_time(SENT, HCM) == "2026-10-28T14:05:00+07:00"
    assert cap_time(SENT, UTC) == "2026-10-28T07:05:00+00:00"
    with pytest.raises(ValueError):
        cap_time(datetime(2026, 1, 1), HCM)


def test_defaults_come_from_the_incident_and_its_worst_ward() -> None:
    vi, en = default_info(INCIDENT, WARDS)
    assert (vi.language, en.language) == ("vi-VN", "en-US")
    assert (vi.urgency, vi.severity, vi.certainty) == ("Immediate", "Severe", "Observed")  # one ward in danger
    assert vi.response_type == ("Evacuate",) and vi.category == ("Met",)
    assert "Phường A" in vi.headline and "nguy hiểm" in vi.headline
    assert "danger level: Phường A" in en.description and "alert level: Phường B" in en.description
    watch = default_info(INCIDENT, [ZoneFacts("hc-ward-b", "Phường B", "ward", "hai-chau", "alert")])[0]
    assert (watch.urgency, watch.severity) == ("Expected", "Moderate")
    # No zone with a level: the incident's severity stands in.
    plain = default_info(INCIDENT, [ZoneFacts("hai-chau", "Hải Châu", "district", None, None)])[1]
    assert plain.severity == "Moderate"
    assert info_from_json(info_to_json((vi, en))) == (vi, en)


def test_a_draft_needs_both_languages_and_a_zone() -> None:
    vi, en = default_info(INCIDENT, WARDS)
    check_draft((vi, en), ["hc-ward-a"])
    with pytest.raises(Invalid, match="en-US") as caught:
        check_draft((vi,), ["hc-ward-a"])
    assert caught.value.field == "info"
    with pytest.raises(Invalid, match="one info block per language"):
        check_draft((vi, vi, en), ["hc-ward-a"])
    with pytest.raises(Invalid) as zones:
        check_draft((vi, en), [])
    assert zones.value.field == "zones"


def test_the_drafter_cannot_approve() -> None:
    check_approver("an", "binh")
    with pytest.raises(NotAllowed, match="second, different operator"):
        check_approver("an", "an")


@pytest.mark.parametrize(("state", "msg_type", "replaced", "ok"), [
    ("approved", "Alert", False, True),
    ("approved", "Update", False, True),
    ("draft", "Alert", False, False),
    ("rejected", "Alert", False, False),
    ("approved", "Cancel", False, False),
    ("approved", "Alert", True, False),
])
def test_what_may_be_updated_or_cancelled(state: str, msg_type: str, replaced: bool, ok: bool) -> None:
    if ok:
        check_replaceable(state, msg_type, replaced)  # type: ignore[arg-type]
    else:
        with pytest.raises(Conflict):
            check_replaceable(state, msg_type, replaced)  # type: ignore[arg-type]


def test_the_outbox_message_carries_the_json_and_the_xml_and_a_short_text() -> None:
    xml = to_xml(_alert(), HCM)
    public = summary(xml)
    msg = message(public, xml, _alert().info)
    assert msg.key == "warning:vn.gov.danang.ioc.2026.w1" and msg.event == "warning"
    assert len(msg.text) <= 400 and msg.text.startswith("Cảnh báo ngập lụt")
    assert msg.data["cap_xml"] == xml and msg.data["warning"]["identifier"] == "vn.gov.danang.ioc.2026.w1"
    assert public["info"][0]["areas"][0] == {"description": "Phường A", "zone": "hc-ward-a"}
    assert topics(WARDS) == ["ioc/v1/hc-ward-a/_warning", "ioc/v1/hai-chau/_warning", "ioc/v1/hc-ward-b/_warning"]


def test_the_atom_feed_links_each_entry_to_its_cap_message() -> None:
    xml = to_xml(_alert(), HCM)
    feed = atom_feed(feed_url="https://ioc.example/api/v1/public/warnings.atom", title="Cảnh báo", author="IOC",
                     updated=SENT.astimezone(HCM),
                     entries=[(summary(xml), "https://ioc.example/w1.xml", "https://ioc.example/w1.json")])
    root = ET.fromstring(feed)
    atom = f"{{{ATOM_NS}}}"
    assert root.tag == f"{atom}feed" and root.get("{http://www.w3.org/XML/1998/namespace}lang") == "vi-VN"
    assert root.findtext(f"{atom}updated") == "2026-10-28T14:05:00+07:00"
    (entry,) = root.findall(f"{atom}entry")
    assert entry.findtext(f"{atom}id") == "urn:cap:ioc@danang.gov.vn:vn.gov.danang.ioc.2026.w1"
    assert entry.findtext(f"{atom}title", "").startswith("[Alert] Cảnh báo ngập lụt")
    assert entry.findtext(f"{atom}updated") == "2026-10-28T14:05:00+07:00"
    link = entry.find(f"{atom}link[@rel='alternate']")
    assert link is not None and (link.get("type"), link.get("href")) == ("application/cap+xml",
                                                                          "https://ioc.example/w1.xml")
    empty = ET.fromstring(atom_feed(feed_url="u", title="t", author="a", updated=SENT, entries=[]))
    assert empty.findall(f"{atom}entry") == [] and empty.findtext(f"{atom}id") == "u"
