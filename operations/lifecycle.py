"""The incident lifecycle without I/O: which action moves an incident from which state, and who may act on it.

    new ──acknowledge──> acknowledged ──start──> in_progress ──resolve──> resolved ──close──> closed
                                                      ^                      │
                                                      └──────reopen──────────┘

States are never skipped, so an incident's timeline always shows who took it in (*tiếp nhận*) before anyone
worked on it. ``reopen`` brings back a resolved incident whose condition returned before it was closed; a
closed incident is final (a new alarm opens a new incident). Assigning, commenting and ticking SOP steps do not
change the state and are refused only once the incident is closed.

Who: admins and city operators (operators without zones) act on every incident; a district operator on the
incidents of its zones (a district covers its wards), whoever owns them, so an incident escalated to the city
stays in its district's hands too; technicians read the device and network incidents of their zones; developers
see none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ioc_core.errors import Conflict, NotAllowed

__all__ = [
    "ACTIONS",
    "NOTES",
    "STAMPS",
    "STATES",
    "TECHNICAL_KINDS",
    "TRANSITIONS",
    "Action",
    "Placement",
    "State",
    "Transition",
    "check_act",
    "check_read",
    "may_act",
    "may_read",
    "next_state",
]

State = Literal["new", "acknowledged", "in_progress", "resolved", "closed"]
STATES: tuple[State, ...] = get_args(State)

Transition = Literal["acknowledge", "start", "resolve", "close", "reopen"]
Action = Literal["acknowledge", "start", "resolve", "close", "reopen", "assign", "comment", "tick", "untick"]
ACTIONS: tuple[Action, ...] = get_args(Action)

TRANSITIONS: dict[Transition, tuple[frozenset[State], State]] = {
    "acknowledge": (frozenset({"new"}), "acknowledged"),
    "start": (frozenset({"acknowledged"}), "in_progress"),
    "resolve": (frozenset({"in_progress"}), "resolved"),
    "close": (frozenset({"resolved"}), "closed"),
    "reopen": (frozenset({"resolved"}), "in_progress"),
}
"""Each state-changing action: the states it may start from, and the state it leads to."""

NOTES: frozenset[Action] = frozenset({"assign", "comment", "tick", "untick"})
"""Actions that leave the state alone; allowed in every state but closed."""

STAMPS: dict[Transition, tuple[str, ...]] = {
    "acknowledge": ("acknowledged_at",),
    "resolve": ("resolved_at",),
    "close": ("closed_at",),
}
"""The incidents column each transition sets to its time (``reopen`` clears ``resolved_at``)."""

TECHNICAL_KINDS = frozenset({"device", "network"})
"""Incident kinds a technician may read (in its zones): those its work can end."""

_LABELS: dict[State, str] = {
    "new": "new (mới)",
    "acknowledged": "acknowledged (tiếp nhận)",
    "in_progress": "in progress (đang xử lý)",
    "resolved": "resolved (đã xử lý)",
    "closed": "closed (đóng)",
}


def next_state(state: State, action: Action) -> State:
    """The state after ``action``; Conflict naming the current state when the action is not allowed from it."""
    if action in NOTES:
        if state == "closed":
            raise Conflict(f"the incident is closed; it can no longer be changed ({action} refused)", field="state")
        return state
    allowed, target = TRANSITIONS[action]  # type: ignore[index]
    if state not in allowed:
        wanted = " or ".join(_LABELS[s] for s in sorted(allowed))
        raise Conflict(f"cannot {action} an incident that is {_LABELS[state]}; it must be {wanted}", field="state")
    return target


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an incident stands for the access rules: its zone, that zone's district (None for a district or a
    city-wide incident) and its kind."""

    zone_code: str
    parent_code: str | None
    kind: str


def _in(zones: tuple[str, ...], place: Placement) -> bool:
    return place.zone_code in zones or (place.parent_code is not None and place.parent_code in zones)


def may_read(role: str, zones: tuple[str, ...], place: Placement) -> bool:
    if role == "admin" or (role == "operator" and not zones):
        return True
    if role == "operator":
        return _in(zones, place)
    if role == "technician":
        return place.kind in TECHNICAL_KINDS and _in(zones, place)
    return False


def may_act(role: str, zones: tuple[str, ...], place: Placement) -> bool:
    if role == "admin" or (role == "operator" and not zones):
        return True
    return role == "operator" and _in(zones, place)


def check_read(role: str, zones: tuple[str, ...], place: Placement, what: str) -> None:
    """NotAllowed unless the caller may see the incident (the devices' convention: 403 outside one's zones)."""
    if role not in ("admin", "operator", "technician"):
        raise NotAllowed(f"role {role!r} may not read incidents; developers see public warnings only")
    if not may_read(role, zones, place):
        if role == "technician" and place.kind not in TECHNICAL_KINDS:
            raise NotAllowed(f"{what} is a {place.kind} incident; technicians see device and network incidents")
        raise NotAllowed(f"{what} is in zone {place.zone_code!r}, outside your zones ({', '.join(zones)})")


def check_act(role: str, zones: tuple[str, ...], place: Placement, what: str) -> None:
    """NotAllowed unless the caller may change the incident."""
    if role not in ("admin", "operator"):
        raise NotAllowed(f"role {role!r} may not act on incidents; needs operator or admin")
    if not may_act(role, zones, place):
        raise NotAllowed(f"{what} is in zone {place.zone_code!r}, outside your zones ({', '.join(zones)})")
