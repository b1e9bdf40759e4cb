"""The public warnings as an Atom feed (RFC 4287): one entry per issued CAP message, linking to its XML.

The "index feed" of the OASIS CAP feeds practice note: each entry's id is the CAP identifier, its updated the
message's sent, its title the headline, and its alternate link the message as ``application/cap+xml``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = ["ATOM_NS", "atom_feed"]

ATOM_NS = "http://www.w3.org/2005/Atom"


def _el(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    child = ET.SubElement(parent, tag, attributes)
    if text is not None:
        child.text = text
    return child


def atom_feed(*, feed_url: str, title: str, author: str, updated: datetime,
              entries: Sequence[tuple[Mapping[str, Any], str, str]], language: str = "vi-VN",
              headline_language: Callable[[str], bool] = lambda lang: lang.startswith("vi")) -> str:
    """The feed; ``entries`` are (CAP summary, CAP XML URL, JSON URL), newest first. Titles and summaries
    are taken from the info block in the feed's language, else the first."""
    # Unqualified tags under a literal xmlns: ElementTree's default_namespace refuses unqualified attributes.
    root = ET.Element("feed", {"xmlns": ATOM_NS, "{http://www.w3.org/XML/1998/namespace}lang": language})
    _el(root, "id", feed_url)
    _el(root, "title", title)
    _el(root, "updated", updated.isoformat(timespec="seconds"))
    _el(_el(root, "author"), "name", author)
    _el(root, "link", rel="self", type="application/atom+xml", href=feed_url)
    for public, cap_url, json_url in entries:
        infos = public.get("info") or [{}]
        info = next((i for i in infos if headline_language(str(i.get("language") or ""))), infos[0])
        entry = _el(root, "entry")
        _el(entry, "id", f"urn:cap:{public['sender']}:{public['identifier']}")
        title_text = info.get("headline") or info.get("event") or str(public["identifier"])
        _el(entry, "title", f"[{public['msg_type']}] {title_text}")
        _el(entry, "updated", str(public["sent"]))
        _el(entry, "published", str(public["sent"]))
        _el(entry, "link", rel="alternate", type="application/cap+xml", href=cap_url)
        _el(entry, "link", rel="related", type="application/json", href=json_url)
        if info.get("description"):
            _el(entry, "summary", str(info["description"]))
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"
