"""LoRaWAN EUIs (DevEUI, JoinEUI): the forms people type, and the one form the platform stores.

A label on a device reads ``A8-40-41-00-01-81-C9-A1``, a ChirpStack screen ``a84041000181c9a1`` and a
spreadsheet ``A8:40:41:00:01:81:C9:A1``: all are the same 64-bit identifier, stored as 16 lower-case hex digits.
"""

from __future__ import annotations

__all__ = ["EUI_FORMS", "EUI_MAX_INPUT", "normalise_eui"]

EUI_FORMS = ("16 hex digits, e.g. a84041000181c9a1; colons, dashes or spaces between the digits and any case "
             "are accepted (A8:40:41:00:01:81:C9:A1, a840-4100-0181-c9a1)")
"""How an EUI may be written, in the words every message and document uses."""

EUI_MAX_INPUT = 64
"""Longest text looked at: 16 digits with a separator between each pair, and room for stray spaces."""

_HEX = frozenset("0123456789abcdef")
_SEPARATORS = str.maketrans("", "", ":- \t")


def normalise_eui(text: str) -> str:
    """The 16 lower-case hex digits ``text`` names; ValueError saying what is wrong otherwise."""
    if len(text) > EUI_MAX_INPUT:
        raise ValueError(f"must be {EUI_FORMS}; got {len(text)} characters")
    digits = text.strip().translate(_SEPARATORS).lower()
    bad = sorted({c for c in digits if c not in _HEX})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:3])
        verb = "is not a hex digit" if len(bad) == 1 else "are not hex digits"
        raise ValueError(f"must be {EUI_FORMS}; {shown} {verb}")
    if len(digits) != 16:
        raise ValueError(f"must be {EUI_FORMS}; got {len(digits)} digit{'' if len(digits) == 1 else 's'}")
    return digits
