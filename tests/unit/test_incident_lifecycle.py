"""The incident lifecycle (operations/lifecycle.py): every action from every state, and who may take it where.

The tables below are the rule written out in full; a transition or permission added or removed in the module
makes one of these cases fail.
"""

from __future__ import annotations

import pytest

from ioc_core.errors import Conflict, NotAllowed
from operations.lifecycle import (
    ACTIONS,
    STAMPS,
    STATES,
    Action,
    Placement,
    State,
    check_act,
    check_read,
    may_act,
    may_read,
    next_state,
)

# (state, action) -> the state it leads to; every pair not listed is refused (409).
ALLOWED: dict[tuple[State, Action], State] = {
    ("new", "acknowledge"): "acknowledged",
    ("acknowledged", "start"): "in_progress",
    ("in_progress", "resolve"): "resolved",
    ("resolved", "close"): "closed",
    ("resolved", "reopen"): "in_progress",
    **{(s, a): s for s in STATES if s != "closed" for a in ("assign", "comment", "tick", "untick")},  # type: ignore[misc]
}


def test_the_tables_cover_every_state_and_action() -> None:
    assert STATES == ("new", "acknowledged", "in_progress", "resolved", "closed")
    assert set(ACTIONS) == {"acknowledge", "start", "resolve", "close", "reopen", "assign", "comment", "tick", "untick"}


@pytest.mark.parametrize(("state", "action"), [(s, a) for s in STATES for a in ACTIONS])
def test_each_action_from_each_state(state: State, action: Action) -> None:
    expected = ALLOWED.get((state, action))
    if expected is not None:
        assert next_state(state, action) == expected
    else:
        with pytest.raises(Conflict) as refused:
            next_state(state, action)
        assert refused.value.field == "state"
        # The refusal names where the incident stands, in the words operators use.
        assert state.replace("_", " ") in refused.value.message


def test_no_state_is_skipped_on_the_way_to_closed() -> None:
    state: State = "new"
    path = [state]
    for action in ("acknowledge", "start", "resolve", "close"):
        state = next_state(state, action)  # type: ignore[arg-type]
        path.append(state)
    assert path == list(STATES)


def test_refusals_name_the_vietnamese_state() -> None:
    with pytest.raises(Conflict, match=r"in progress \(đang xử lý\)"):
        next_state("in_progress", "acknowledge")
    with pytest.raises(Conflict, match=r"closed"):
        next_state("closed", "comment")


def test_timestamps_each_transition_sets() -> None:
    assert STAMPS == {"acknowledge": ("acknowledged_at",), "resolve": ("resolved_at",), "close": ("closed_at",)}


WARD = Placement("thach-thang", "hai-chau", "flood")
DISTRICT = Placement("hai-chau", None, "flood")
DEVICE_WARD = Placement("thach-thang", "hai-chau", "device")
NETWORK = Placement("son-tra", None, "network")
CITYWIDE = Placement("city", None, "pipeline")

# (role, zones, placement) -> (may read, may act)
ACCESS: list[tuple[str, tuple[str, ...], Placement, bool, bool]] = [
    ("admin", (), WARD, True, True),
    ("admin", (), CITYWIDE, True, True),
    ("operator", (), WARD, True, True),             # the city IOC
    ("operator", (), CITYWIDE, True, True),
    ("operator", ("hai-chau",), WARD, True, True),  # a district covers its wards
    ("operator", ("hai-chau",), DISTRICT, True, True),
    ("operator", ("hai-chau",), NETWORK, False, False),
    ("operator", ("hai-chau",), CITYWIDE, False, False),
    ("operator", ("thach-thang",), WARD, True, True),
    ("operator", ("thach-thang",), DISTRICT, False, False),  # a ward's centre does not act on its district
    ("operator", ("son-tra",), WARD, False, False),
    ("technician", ("hai-chau",), WARD, False, False),       # hazards are the operators'
    ("technician", ("hai-chau",), DEVICE_WARD, True, False),
    ("technician", ("son-tra",), NETWORK, True, False),
    ("technician", ("son-tra",), DEVICE_WARD, False, False),
    ("technician", (), DEVICE_WARD, False, False),
    ("developer", (), WARD, False, False),
    ("developer", (), DEVICE_WARD, False, False),
    ("nobody", (), WARD, False, False),
]


@pytest.mark.parametrize(("role", "zones", "place", "reads", "acts"), ACCESS)
def test_who_may_read_and_act(role: str, zones: tuple[str, ...], place: Placement, reads: bool, acts: bool) -> None:
    assert may_read(role, zones, place) is reads
    assert may_act(role, zones, place) is acts
    if reads:
        check_read(role, zones, place, "incident 1")
    else:
        with pytest.raises(NotAllowed):
            check_read(role, zones, place, "incident 1")
    if acts:
        check_act(role, zones, place, "incident 1")
    else:
        with pytest.raises(NotAllowed):
            check_act(role, zones, place, "incident 1")


def test_escalation_does_not_take_an_incident_from_its_district() -> None:
    # Access follows the zone, not the owner: an incident escalated to 'city' keeps its zone.
    assert may_act("operator", ("hai-chau",), WARD)


def test_refusals_say_why() -> None:
    with pytest.raises(NotAllowed, match="developers see public warnings only"):
        check_read("developer", (), WARD, "incident 7")
    with pytest.raises(NotAllowed, match="technicians see device and network incidents"):
        check_read("technician", ("hai-chau",), WARD, "incident 7")
    with pytest.raises(NotAllowed, match="needs operator or admin"):
        check_act("technician", ("hai-chau",), DEVICE_WARD, "incident 7")
    with pytest.raises(NotAllowed, match="'son-tra', outside your zones"):
        check_act("operator", ("hai-chau",), NETWORK, "incident 7")
