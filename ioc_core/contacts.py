"""Where a notification may go: phone numbers, e-mail addresses and webhook URLs, checked and put in one form.

One home for these rules, read by the API (an operator's channel choices) and the channel adapters (a row
queued by anyone): a Vietnamese phone number is sent as ``84`` and nine or ten digits, the form Zalo ZNS asks
for and an SMS gateway takes with a ``+``. And the webhook signing secret's form (Standard Webhooks).
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from ioc_core.errors import Invalid

__all__ = ["email_address", "phone_number", "webhook_secret_key", "webhook_url"]

# 0xxxxxxxxx (national), 84xxxxxxxxx or +84xxxxxxxxx; spaces, dots and dashes between digits are allowed.
_PHONE = re.compile(r"^(?:\+?84|0)([1-9]\d{8,9})$")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s<>(),;:\"\[\]\x00-\x1f\x7f]+@{_LABEL}(?:\.{_LABEL})+$")


def phone_number(value: str) -> str:
    """``value`` as ``84`` followed by the subscriber digits; Invalid when it is not a Vietnamese number."""
    compact = re.sub(r"[\s.()-]", "", value)
    match = _PHONE.fullmatch(compact)
    if match is None:
        raise Invalid(f"{value!r} is not a Vietnamese phone number such as 0905123456 or +84905123456",
                      field="address")
    return "84" + match.group(1)


def email_address(value: str) -> str:
    """``value`` stripped; Invalid unless it is one plain address (no display name, no list)."""
    address = value.strip()
    if len(address) > 254 or _EMAIL.fullmatch(address) is None:
        raise Invalid(f"{value!r} is not an e-mail address such as ops@danang.gov.vn", field="address")
    return address


def webhook_url(value: str) -> str:
    """``value`` when it is an absolute http(s) URL without credentials or fragment; Invalid otherwise."""
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value.strip()):
        raise Invalid(f"{value!r} holds spaces or control characters; a URL has none", field="address")
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 (a bad port raises only when read)
    except ValueError as err:  # an unclosed IPv6 bracket, a port that is not a number
        raise Invalid(f"{value!r} is not a URL: {err}", field="address") from err
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password \
            or parts.fragment or len(value) > 2000:
        raise Invalid(f"{value!r} is not an http(s) URL without user, password or fragment", field="address")
    return value.strip()


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (Standard Webhooks); ValueError unless it holds 24 to 64
    bytes, so the settings report it at start-up."""
    if not secret.startswith("whsec_"):
        raise ValueError("must start with whsec_ (Standard Webhooks' form)")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("the part after whsec_ is not base64") from err
    if not 24 <= len(key) <= 64:
        raise ValueError(f"holds {len(key)} bytes; give 24 to 64, e.g. whsec_ + base64 of 32 random bytes")
    return key
