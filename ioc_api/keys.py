"""API keys: random tokens shown once, stored as SHA-256 hashes, found by a short public prefix.

A key looks like ``ioc_<prefix>_<secret>``. The tokens carry 256 bits of randomness, so a fast hash is
enough (there is nothing to brute-force the way there is with passwords).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import NamedTuple

__all__ = ["NewKey", "hash_key", "new_key", "prefix_of", "verify"]


class NewKey(NamedTuple):
    key: str
    prefix: str
    digest: bytes


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> NewKey:
    prefix = secrets.token_hex(4)
    key = f"ioc_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key, prefix, hash_key(key))


def prefix_of(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "ioc" or len(parts[1]) != 8:
        return None
    return parts[1]


def verify(key: str, digest: bytes) -> bool:
    return hmac.compare_digest(hash_key(key), digest)
