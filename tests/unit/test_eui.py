"""DevEUIs as people write them, and the settings `ioc devices` reads."""

from __future__ import annotations

import pytest

from ioc_core.errors import ConfigError
from ioc_core.eui import normalise_eui
from ioc_core.settings import ApiClientSettings, load


@pytest.mark.parametrize("written", ["a84041000181c9a1", "A84041000181C9A1", "a8:40:41:00:01:81:c9:a1",
                                     "A8-40-41-00-01-81-C9-A1", "a840 4100 0181 c9a1", "\ta840-4100-0181-c9a1 "])
def test_every_written_form_is_16_lower_case_digits(written: str) -> None:
    assert normalise_eui(written) == "a84041000181c9a1"


@pytest.mark.parametrize(("written", "words"), [
    ("", "got 0 digits"),
    ("a84041000181c9a", "got 15 digits"),
    ("a84041000181c9a1a", "got 17 digits"),
    ("a8.40.41.00.01.81.c9.a1", "'.' is not a hex digit"),
    ("0xa84041000181c9a1", "'x' is not a hex digit"),
    ("z84041000181c9ay", "'y', 'z' are not hex digits"),
    ("a" * 65, "got 65 characters"),
])
def test_anything_else_says_16_hex_digits(written: str, words: str) -> None:
    with pytest.raises(ValueError, match="16 hex digits") as caught:
        normalise_eui(written)
    assert words in str(caught.value)


def test_the_api_url_takes_a_copied_prefix_and_the_key_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_API_URL", "https://ioc.example.vn/api/v1/")
    monkeypatch.delenv("IOC_API_KEY", raising=False)
    settings = load(ApiClientSettings)
    assert settings.url == "https://ioc.example.vn"
    with pytest.raises(ConfigError, match="IOC_API_KEY is not set"):
        settings.required_key()
    monkeypatch.setenv("IOC_API_URL", "ioc.example.vn")
    with pytest.raises(ConfigError, match="IOC_API_URL: must be http"):
        load(ApiClientSettings)
