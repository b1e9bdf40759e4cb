"""The kinds table agrees with the vocabulary, the codecs' examples and the simulated fleet."""

from __future__ import annotations

from pathlib import Path

import yaml

from device_simulators.catalogue import MODELS
from ioc_core.kinds import KINDS, ZONE_KEY_VALUES
from ioc_core.metrics import VOCABULARY

BUILTIN = Path(__file__).resolve().parents[2] / "ingest" / "codecs" / "builtin"


def test_every_metric_named_is_in_the_vocabulary() -> None:
    for info in KINDS.values():
        assert set(info.metrics) <= set(VOCABULARY), info.kind
    assert {name for name, _ in ZONE_KEY_VALUES} <= set(VOCABULARY)


def test_simulated_models_report_what_their_kind_lists_at_its_interval() -> None:
    for model in MODELS:
        info = KINDS[model.kind]
        assert info.interval_s == model.uplink_interval_s, model.id
        folder = BUILTIN / model.codec_id.replace("-", "_")
        examples = yaml.safe_load((folder / "examples.yaml").read_text(encoding="utf-8"))["uplinkDecoder"]["examples"]
        reported = {name for e in examples for name in (e.get("measurements") or {})}
        if model.codec_id != "cayenne-lpp":  # one codec, many sensors: its examples go beyond this model
            assert set(info.metrics) <= reported, (model.id, set(info.metrics) - reported)
