"""SOP cards (operations/sop.py): the shipped cards under deploy/sop load, and a bad card is refused with one line
naming its file and field, as `ioc api` reports it at start-up."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateways.schema import __file__ as schema_init
from operations.sop import SopError, SopLibrary, default_sop_dir

HAZARDS_SQL = Path(schema_init).parent / "0015_hazard_status.sql"

GOOD = """kind: flood
title: {vi: Ngập lụt, en: Flood}
steps:
  - {id: confirm, text: {vi: Xác nhận, en: Confirm}}
  - {id: notify, text: {vi: Báo, en: Notify}}
contacts:
  - {name: {vi: Tổng đài 1022, en: 1022 hotline}, phone: "1022"}
zones:
  hai-chau:
    example: true
    roads: [{name: Hoàng Diệu}]
    shelters: [{name: Trường A, address: "1 Lê Lợi", capacity: 100}]
"""


def _hazard_codes() -> set[str]:
    text = HAZARDS_SQL.read_text(encoding="utf-8")
    block = text.split("INSERT INTO hazards", 1)[1].split(";", 1)[0]
    return set(re.findall(r"\('([a-z_]+)',", block))


def test_the_shipped_cards_load_and_cover_every_hazard_and_technical_kind() -> None:
    library = SopLibrary.load(default_sop_dir())
    hazards = _hazard_codes()
    assert hazards == {"flood", "heavy_rain", "air_quality"}
    assert set(library.cards) == hazards | {"device", "network", "pipeline"}
    for card in library.cards.values():
        assert card.steps and all(s.text.vi and s.text.en for s in card.steps)
        assert any(c.phone == "1022" for c in card.contacts), card.kind  # the city's hotline on every card


def test_the_shipped_hazard_cards_know_hai_chau_and_mark_examples() -> None:
    library = SopLibrary.load(default_sop_dir())
    for kind in ("flood", "heavy_rain", "air_quality"):
        card = library.cards[kind]
        found = card.places("thach-thang", "hai-chau")
        assert found is not None
        _zone, places = found
        assert places.example and places.roads and places.shelters
        assert {c.phone for c in card.contacts} >= {"1022"}
    flood = library.cards["flood"]
    assert {"114", "115"} <= {c.phone for c in flood.contacts}
    assert flood.places("thach-thang", "hai-chau")[0] == "thach-thang"  # type: ignore[index]  # its own first
    assert flood.places("hoa-cuong-bac", "hai-chau")[0] == "hai-chau"  # type: ignore[index]  # else its district
    assert flood.places("man-thai", "son-tra") is None


def _folder(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_a_good_folder_loads(tmp_path: Path) -> None:
    library = SopLibrary.load(_folder(tmp_path, **{"flood.yaml": GOOD}))
    assert library.cards["flood"].step_ids() == ("confirm", "notify")
    assert library.card("heavy_rain") is None


BROKEN: list[tuple[str, str, str]] = [
    ("flood.yaml", GOOD.replace("kind: flood", "kind: storm"), r"flood\.yaml: kind: 'storm' differs"),
    ("flood.yaml", GOOD.replace("id: notify", "id: confirm"), r"flood\.yaml: steps\.1\.id: 'confirm' is used twice"),
    ("flood.yaml", GOOD.replace("en: Confirm", "fr: Confirmer"), r"flood\.yaml: steps\.0\.text\.en: Field required"),
    ("flood.yaml", GOOD.replace('phone: "1022"', "phone: call us"), r"flood\.yaml: contacts\.0\.phone: "),
    ("flood.yaml", GOOD.replace("capacity: 100", "capacity: -1"), r"zones\.hai-chau\.shelters\.0\.capacity: "),
    ("flood.yaml", GOOD.replace("hai-chau:", "Hai Chau:"), r"flood\.yaml: zones\.Hai Chau"),
    ("flood.yaml", GOOD + "owner: me\n", r"flood\.yaml: owner: Extra inputs are not permitted"),
    ("flood.yaml", "kind: flood\ntitle: {vi: a, en: b}\nsteps: []\n", r"flood\.yaml: steps: "),
    ("flood.yaml", "- just\n- a list\n", r"flood\.yaml: expected a mapping"),
    ("flood.yaml", "kind: [flood\n", r"flood\.yaml: not valid YAML"),
]


@pytest.mark.parametrize(("name", "text", "message"), BROKEN)
def test_a_broken_card_is_refused_naming_file_and_field(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(SopError, match=message) as refused:
        SopLibrary.load(_folder(tmp_path, **{name: text}))
    assert "\n" not in str(refused.value)


def test_a_folder_must_exist_and_hold_cards(tmp_path: Path) -> None:
    with pytest.raises(SopError, match=r"\(IOC_SOP_DIR\) is not a folder"):
        SopLibrary.load(tmp_path / "missing")
    with pytest.raises(SopError, match="has no"):
        SopLibrary.load(tmp_path)


def test_two_cards_of_one_kind_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SopError, match=r"flood\.yml: kind: 'flood' has a card already"):
        SopLibrary.load(_folder(tmp_path, **{"flood.yaml": GOOD, "flood.yml": GOOD}))
