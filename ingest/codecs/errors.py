"""Errors of the codec layer, sorted by what the caller should do about them.

    IocError                        (ioc_core.errors)
    ├── SkippableError              the uplink cannot be decoded: dead-letter it and go on
    │   └── UnknownCodecError       stage "decode": no codec with that id (also a KeyError)
    └── FatalError
        └── ConfigError
            └── CodecLoadError      a codec folder, JS file or examples file is broken: stop at start-up
                └── ExamplesError   an examples YAML file does not follow the device-repository layout

A codec that meets a bad payload does not raise: it returns a ``DecodeResult`` with ``errors``.
"""

from __future__ import annotations

from ioc_core.errors import ConfigError, SkippableError

__all__ = ["CodecLoadError", "ExamplesError", "UnknownCodecError"]


class CodecLoadError(ConfigError):
    """A codec cannot be loaded: duplicate id, broken import, bad manifest, JS that does not compile."""


class ExamplesError(CodecLoadError):
    """An examples file is unreadable or does not follow the device-repository layout."""


class UnknownCodecError(SkippableError, KeyError):
    """No codec is registered under this id; the uplink is dead-lettered at the decode stage."""

    def __init__(self, codec_id: str) -> None:
        super().__init__(f"unknown codec {codec_id!r}", stage="decode")
        self.codec_id = codec_id

    def __str__(self) -> str:
        # KeyError would print the message in quotes; the reason reads better bare.
        return self.reason
