"""SOP cards: the standard operating procedure of each incident kind, kept as YAML files and validated once.

A card is ``<folder>/<kind>.yaml``: ``kind`` (the file's name: a hazard code such as ``flood``, or ``device``,
``network``, ``pipeline``), ``title`` and each step's ``text`` in Vietnamese and English, whom to call
(``contacts``), and per zone code the roads to watch and the shelters to open. An incident shows its kind's card
with its zone's roads and shelters (a ward without its own falls back to its district's) as a checklist.

``SopLibrary.load`` reads a folder at start-up of ``ioc api`` and refuses a bad one with one line naming the
file and the field, as the codec folders are (``ingest/codecs/library.py``); nothing rescans afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ioc_core.errors import ConfigError

__all__ = [
    "CARD_SUFFIX",
    "Contact",
    "Road",
    "Shelter",
    "SopCard",
    "SopError",
    "SopLibrary",
    "Step",
    "Text",
    "ZonePlaces",
    "default_sop_dir",
]

CARD_SUFFIX = ".yaml"

_Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,63}$")]
_Line = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]


class SopError(ConfigError):
    """A card folder or file that cannot be used; ``ioc api`` stops with this one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Strict):
    """The same words in Vietnamese (what operators and citizens read) and English."""

    vi: _Line
    en: _Line


class Step(_Strict):
    id: _Code
    text: Text


class Contact(_Strict):
    name: Text
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 .-]{3,20}$")]
    note: Text | None = None


class Road(_Strict):
    name: _Line
    note: _Line | None = None


class Shelter(_Strict):
    name: _Line
    address: _Line
    capacity: int | None = Field(default=None, gt=0)


class ZonePlaces(_Strict):
    """Where to look in one zone; ``example`` marks entries that stand in until the district sends its own."""

    example: bool = False
    contacts: tuple[Contact, ...] = ()
    roads: tuple[Road, ...] = ()
    shelters: tuple[Shelter, ...] = ()


class SopCard(_Strict):
    kind: _Code
    title: Text
    steps: tuple[Step, ...] = Field(min_length=1)
    contacts: tuple[Contact, ...] = ()
    zones: dict[Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")], ZonePlaces] = {}

    def places(self, zone_code: str, parent_code: str | None) -> tuple[str, ZonePlaces] | None:
        """The roads and shelters of a zone, or of its district when the zone has none of its own."""
        for code in (zone_code, parent_code):
            if code is not None and code in self.zones:
                return code, self.zones[code]
        return None

    def step_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.steps)


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _card(path: Path) -> SopCard:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise SopError(f"{path}: cannot read: {err}") from err
    except yaml.YAMLError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else "bad YAML"
        raise SopError(f"{path}: not valid YAML: {first}") from err
    if not isinstance(raw, Mapping):
        raise SopError(f"{path}: expected a mapping with kind, title, steps, contacts, zones")
    try:
        card = SopCard.model_validate(raw)
    except ValidationError as err:
        problem = err.errors()[0]
        raise SopError(f"{path}: {_where(problem['loc'])}: {problem['msg']}") from err
    if card.kind != path.stem:
        raise SopError(f"{path}: kind: {card.kind!r} differs from the file's name {path.stem!r}")
    seen: set[str] = set()
    for i, step in enumerate(card.steps):
        if step.id in seen:
            raise SopError(f"{path}: steps.{i}.id: {step.id!r} is used twice")
        seen.add(step.id)
    return card


@dataclass(frozen=True, slots=True)
class SopLibrary:
    """The cards of one folder, by kind."""

    cards: Mapping[str, SopCard]
    folder: Path | None = None

    @classmethod
    def load(cls, folder: Path) -> SopLibrary:
        """Every ``*.yaml`` card of ``folder``; SopError naming the file and field of the first problem."""
        if not folder.is_dir():
            raise SopError(f"SOP card folder {folder} (IOC_SOP_DIR) is not a folder")
        paths = sorted(p for p in folder.iterdir() if p.suffix in (CARD_SUFFIX, ".yml"))
        if not paths:
            raise SopError(f"SOP card folder {folder} (IOC_SOP_DIR) has no *{CARD_SUFFIX} cards")
        cards: dict[str, SopCard] = {}
        for path in paths:
            card = _card(path)
            if card.kind in cards:
                raise SopError(f"{path}: kind: {card.kind!r} has a card already")
            cards[card.kind] = card
        return cls(cards, folder)

    def card(self, kind: str) -> SopCard | None:
        return self.cards.get(kind)


def default_sop_dir() -> Path:
    """``deploy/sop`` of the source checkout this package runs from (the cards shipped with the platform)."""
    return Path(__file__).resolve().parent.parent / "deploy" / "sop"
