"""Public warnings: what a draft says by default, who may approve it, what may replace it, and what goes out.

A warning is drafted from an incident (its hazard, the wards in alert or danger) so that one click gives a
sensible text in Vietnamese and English; an operator edits it, and a second, different operator approves it.
Approval freezes the CAP 1.2 message (``operations.cap``) and queues it for the public channels and the public
MQTT feed in the same transaction (``operations.outbox``). An Update or Cancel is a new draft that replaces an
approved warning and references it. These rules hold no I/O; ``ioc_api.queries.warnings`` applies them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ioc_core.errors import Conflict, Invalid, NotAllowed
from operations.cap import Category, Certainty, Info, MsgType, ResponseType, Severity, Urgency
from operations.outbox import Message

__all__ = [
    "LANGUAGES",
    "MAX_SMS",
    "TOPIC_SUFFIX",
    "IncidentFacts",
    "ZoneFacts",
    "cancel_info",
    "check_approver",
    "check_draft",
    "check_replaceable",
    "default_info",
    "identifier_for",
    "info_from_json",
    "info_to_json",
    "message",
    "topic",
    "topics",
]

LANGUAGES = ("vi-VN", "en-US")
"""Every warning speaks both: citizens read Vietnamese, visitors and the city's partners English."""

MAX_SMS = 400
"""Zalo ZNS's limit on a template message, which SMS shares here."""

TOPIC_SUFFIX = "_warning"
"""The public feed's topic of a zone's latest warning: ``ioc/v1/{zone}/_warning`` (retained)."""

_LEVELS = ("watch", "alert", "danger")


@dataclass(frozen=True, slots=True)
class ZoneFacts:
    """A zone as a warning needs it: names for ``areaDesc``, its district, and its status for the hazard."""

    code: str
    name: str
    level: str
    parent: str | None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    id: int
    zone_code: str
    hazard: str
    hazard_vi: str
    hazard_en: str
    severity: str
    state: str


# Per hazard: CAP categories (CAP 1.2: "Met - Meteorological (inc. flood)"), and what to do at each level.
_CATEGORIES: Mapping[str, tuple[Category, ...]] = {"flood": ("Met",), "heavy_rain": ("Met",),
                                                    "air_quality": ("Env", "Health")}
_RESPONSES: Mapping[str, Mapping[str, ResponseType]] = {
    "flood": {"watch": "Monitor", "alert": "Prepare", "danger": "Evacuate"},
    "heavy_rain": {"watch": "Monitor", "alert": "Prepare", "danger": "Shelter"},
    "air_quality": {"watch": "Monitor", "alert": "Avoid", "danger": "Avoid"},
}
_INSTRUCTIONS: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "flood": {
        "watch": ("Theo dõi tin cảnh báo, chuẩn bị kê cao đồ đạc.", "Follow the warnings; be ready to raise "
                  "belongings."),
        "alert": ("Kê cao đồ đạc, không đi qua đường ngập, chuẩn bị sơ tán khi có yêu cầu. Đường dây nóng 1022.",
                  "Raise belongings, do not cross flooded roads, be ready to evacuate when told. Hotline 1022."),
        "danger": ("Sơ tán ngay đến nơi trú tránh an toàn, tránh xa vùng nước chảy xiết. Cứu nạn: 114; đường dây "
                   "nóng 1022.", "Evacuate now to a safe shelter; keep away from fast-flowing water. Rescue: "
                   "114; hotline 1022."),
    },
    "heavy_rain": {
        "watch": ("Theo dõi tin cảnh báo mưa lớn.", "Follow the heavy-rain warnings."),
        "alert": ("Hạn chế ra đường, đề phòng ngập úng cục bộ và sạt lở. Đường dây nóng 1022.",
                  "Avoid travel; expect local ponding and landslides. Hotline 1022."),
        "danger": ("Ở trong nhà hoặc nơi trú tránh an toàn, không đi qua vùng ngập. Cứu nạn: 114.",
                   "Stay indoors or in a safe shelter; do not cross flooded areas. Rescue: 114."),
    },
    "air_quality": {
        "watch": ("Người nhạy cảm nên hạn chế hoạt động ngoài trời.", "Sensitive people should limit outdoor "
                  "activity."),
        "alert": ("Hạn chế ra ngoài, đeo khẩu trang khi ra đường, đóng cửa sổ.", "Limit time outdoors, wear a mask "
                  "outside, keep windows closed."),
        "danger": ("Ở trong nhà, đóng cửa sổ; người nhạy cảm tránh mọi hoạt động ngoài trời.",
                   "Stay indoors with windows closed; sensitive people avoid all outdoor activity."),
    },
}
_GENERIC = ("Theo dõi tin cảnh báo và làm theo hướng dẫn của chính quyền địa phương. Đường dây nóng 1022.",
            "Follow the warnings and the local authorities' instructions. Hotline 1022.")
_LEVEL_WORDS = {"watch": ("theo dõi", "watch"), "alert": ("cảnh báo", "alert"), "danger": ("nguy hiểm", "danger")}
# The incident's severity stands in when no zone has a hazard level (a technical incident, a status not kept).
_SEVERITY_LEVEL = {"info": "watch", "minor": "watch", "major": "alert", "critical": "danger"}
_CAP_LEVEL: Mapping[str, tuple[Urgency, Severity, Certainty]] = {
    "watch": ("Future", "Minor", "Likely"),
    "alert": ("Expected", "Moderate", "Observed"),
    "danger": ("Immediate", "Severe", "Observed"),
}


def _level(incident: IncidentFacts, zones: Sequence[ZoneFacts]) -> str:
    seen = [z.status for z in zones if z.status in _LEVELS]
    if seen:
        return max(seen, key=_LEVELS.index)
    return _SEVERITY_LEVEL.get(incident.severity, "alert")


def default_info(incident: IncidentFacts, zones: Sequence[ZoneFacts]) -> tuple[Info, Info]:
    """A draft's text from the incident and the zones it covers: Vietnamese first, then English."""
    level = _level(incident, zones)
    urgency, severity, certainty = _CAP_LEVEL[level]
    names = ", ".join(z.name for z in zones) or incident.zone_code
    word_vi, word_en = _LEVEL_WORDS[level]
    instruction_vi, instruction_en = _INSTRUCTIONS.get(incident.hazard, {}).get(level, _GENERIC)
    category = _CATEGORIES.get(incident.hazard, ("Other",))
    response = _RESPONSES.get(incident.hazard, {}).get(level, "Monitor")
    by_level: dict[str, list[str]] = {}
    for z in zones:
        if z.status in _LEVELS:
            by_level.setdefault(z.status, []).append(z.name)
    detail_vi = "; ".join(f"mức {_LEVEL_WORDS[s][0]}: {', '.join(n)}" for s, n in sorted(
        by_level.items(), key=lambda item: -_LEVELS.index(item[0])))
    detail_en = "; ".join(f"{_LEVEL_WORDS[s][1]} level: {', '.join(n)}" for s, n in sorted(
        by_level.items(), key=lambda item: -_LEVELS.index(item[0])))
    vi = Info(
        language="vi-VN", category=category, event=incident.hazard_vi, urgency=urgency, severity=severity,
        certainty=certainty, response_type=(response,),
        headline=f"Cảnh báo {incident.hazard_vi.lower()} mức {word_vi}: {names}"[:160],
        description=(f"Trung tâm Giám sát, điều hành đô thị thông minh Đà Nẵng (IOC) ghi nhận "
                     f"{incident.hazard_vi.lower()} tại {names}" + (f" ({detail_vi})" if detail_vi else "") + "."),
        instruction=instruction_vi)
    en = Info(
        language="en-US", category=category, event=incident.hazard_en, urgency=urgency, severity=severity,
        certainty=certainty, response_type=(response,),
        headline=f"{incident.hazard_en} warning ({word_en} level): {names}"[:160],
        description=(f"Da Nang's Intelligent Operations Centre (IOC) reports {incident.hazard_en.lower()} in "
                     f"{names}" + (f" ({detail_en})" if detail_en else "") + "."),
        instruction=instruction_en)
    return vi, en


def cancel_info(earlier: Sequence[Info]) -> tuple[Info, ...]:
    """The default text of a Cancel: the earlier warning's event and areas, with the all-clear."""
    out = []
    for info in earlier:
        vi = info.language.lower().startswith("vi")
        out.append(Info(
            language=info.language, category=info.category, event=info.event, urgency="Past", severity="Minor",
            certainty="Observed", response_type=("AllClear",),
            headline=(f"Hủy cảnh báo: {info.headline}" if vi else f"Cancelled: {info.headline}")[:160],
            description=("Cảnh báo trước đây đã được hủy bỏ; tình hình đã trở lại bình thường." if vi else
                         "The earlier warning is cancelled; the situation is back to normal."),
            instruction=("Tiếp tục theo dõi tin từ chính quyền địa phương." if vi else
                         "Keep following the local authorities' news.")))
    return tuple(out)


def check_draft(info: Sequence[Info], zones: Sequence[str]) -> None:
    """One block per language, both languages present; at least one zone. Invalid naming the field."""
    languages = [i.language for i in info]
    if len(set(languages)) != len(languages):
        raise Invalid(f"one info block per language; got {', '.join(languages)}", field="info")
    missing = [lang for lang in LANGUAGES if lang not in languages]
    if missing:
        raise Invalid(f"a public warning needs info blocks in {' and '.join(LANGUAGES)}; missing "
                      f"{', '.join(missing)}", field="info")
    if not zones:
        raise Invalid("a warning covers at least one zone", field="zones")
    if len(set(zones)) != len(zones):
        raise Invalid("a zone is named twice", field="zones")


def check_approver(drafted_by: str, approver: str) -> None:
    """Two-person rule: whoever drafted a warning cannot approve it (the table's CHECK says it too)."""
    if drafted_by == approver:
        raise NotAllowed(f"{approver} drafted this warning; a second, different operator must approve it")


def check_replaceable(state: str, msg_type: MsgType, replaced: bool) -> None:
    """An Update or Cancel replaces the newest approved message of a chain that is not cancelled."""
    if state != "approved":
        raise Conflict(f"only an approved warning can be updated or cancelled; this one is {state}")
    if msg_type == "Cancel":
        raise Conflict("this warning is a Cancel: nothing is left to update or cancel")
    if replaced:
        raise Conflict("an approved Update or Cancel replaces this warning already: update or cancel that one")


def identifier_for(prefix: str, warning_id: int, year: int) -> str:
    """A CAP identifier unique to this sender: ``<prefix>.<year>.w<id>`` (no spaces, commas, & or <)."""
    return f"{prefix}.{year}.w{warning_id}"


def info_to_json(info: Sequence[Info]) -> list[dict[str, Any]]:
    return [{**asdict(i), "category": list(i.category), "response_type": list(i.response_type)} for i in info]


def info_from_json(data: Sequence[Mapping[str, Any]]) -> tuple[Info, ...]:
    return tuple(Info(**{**d, "category": tuple(d["category"]), "response_type": tuple(d.get("response_type", ()))})
                 for d in data)


def topic(zone_code: str, prefix: str = "ioc/v1") -> str:
    return f"{prefix}/{zone_code}/{TOPIC_SUFFIX}"


def topics(zones: Sequence[ZoneFacts], prefix: str = "ioc/v1") -> list[str]:
    """Each covered zone's topic and its district's, once: a district's subscribers hear of their wards."""
    codes: list[str] = []
    for z in zones:
        for code in (z.code, z.parent):
            if code and code not in codes:
                codes.append(code)
    return [topic(code, prefix) for code in codes]


def message(public: Mapping[str, Any], cap_xml: str, info: Sequence[Info]) -> Message:
    """What the outbox sends for an approved warning: the short text (SMS, Zalo) in Vietnamese, the long form in
    both languages, and as data the warning's JSON form and its CAP XML (the MQTT feed publishes these)."""
    first = next((i for i in info if i.language == LANGUAGES[0]), info[0])
    text = f"{first.headline}. {first.instruction}"
    if len(text) > MAX_SMS:
        text = text[:MAX_SMS - 1] + "…"
    body = "\n\n".join(f"{i.headline}\n\n{i.description}\n\n{i.instruction}" for i in info)
    return Message(key=f"warning:{public['identifier']}", event="warning", subject=first.headline, text=text,
                   body=body, data={"warning": dict(public), "cap_xml": cap_xml})
