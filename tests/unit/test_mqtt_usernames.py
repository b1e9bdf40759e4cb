"""Developer MQTT usernames: a label of any text becomes a safe slug, and a name never doubles the prefix."""

from __future__ import annotations

import pytest

from ioc_core.mqtt_access import USERNAME_PATTERN, developer_username, label_slug


@pytest.mark.parametrize(("label", "slug"), [
    ("my flood app", "my_flood_app"),
    ("flood_app", "flood_app"),
    ("Cảnh báo lũ – Đà Nẵng", "Canh_bao_lu_Da_Nang"),
    ("  has-dash  ", "has_dash"),
    ("x" * 40, "x" * 24),
    ("a" * 23 + " b", "a" * 23),  # cut at 24, and never ends with the separator
    ("!!!", ""),
    ("漢字", ""),
])
def test_label_slug(label: str, slug: str) -> None:
    assert label_slug(label) == slug


@pytest.mark.parametrize(("owner", "username"), [
    ("anna", "dev-7-anna-app"),
    ("dev-anna", "dev-7-anna-app"),
    ("dev_anna", "dev-7-anna-app"),
    ("DEV.anna", "dev-7-anna-app"),
    ("dev", "dev-7-app"),
    ("dev@x", "dev-7-x-app"),
    ("devon", "dev-7-devon-app"),  # a name that only begins with the letters keeps them
])
def test_no_doubled_prefix(owner: str, username: str) -> None:
    assert developer_username(7, owner, "app") == username


def test_every_username_is_one_the_broker_takes() -> None:
    for owner in ("anna", "dev-" + "é" * 80, "a b:c", "dev"):
        name = developer_username(123456, owner, label_slug("my flood app, version " + "9" * 30))
        assert USERNAME_PATTERN.fullmatch(name) and name.startswith("dev-123456-"), name
