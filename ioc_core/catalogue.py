"""What the API may accept as a device's model and codec: the codec library, flattened at start-up."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["DeviceCatalogue"]


@dataclass(frozen=True, slots=True)
class DeviceCatalogue:
    """Codec ids, and the codec each known device model uses (from the codecs' manifests)."""

    codecs: frozenset[str] = frozenset()
    models: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, codecs: Iterable[tuple[str, Sequence[str]]]) -> DeviceCatalogue:
        """From ``(codec id, models it decodes)`` pairs; a model listed twice keeps its first codec."""
        ids: set[str] = set()
        models: dict[str, str] = {}
        for codec_id, codec_models in codecs:
            ids.add(codec_id)
            for model in codec_models:
                models.setdefault(model, codec_id)
        return cls(frozenset(ids), MappingProxyType(models))

    def codec_for(self, model: str | None, codec_id: str | None) -> str | None:
        """The codec a device will be decoded with: its own choice first, then its model's."""
        if codec_id:
            return codec_id
        return self.models.get(model or "")
