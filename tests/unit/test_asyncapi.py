"""The feed's AsyncAPI document: the committed file is what the code generates, and the payloads fit its schemas."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest.feed.asyncapi import asyncapi_document, example_payloads, render_yaml
from ingest.feed.payloads import FeedDevice, SenMLPacker
from ioc_core.metrics import UNIT_NAMES, VOCABULARY

jsonschema_rs = pytest.importorskip("jsonschema_rs", reason="the schema checks need jsonschema-rs (dev extra)")

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def _validator(document: dict[str, Any], schema: str) -> Any:
    root = {"allOf": [{"$ref": f"#/components/schemas/{schema}"}], "components": document["components"]}
    return jsonschema_rs.Draft7Validator(root)


def test_the_committed_document_is_current() -> None:
    expected = render_yaml(asyncapi_document())
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    assert committed == expected, "docs/asyncapi.yaml is stale: run `ioc feed asyncapi` and commit the result"


def test_every_example_fits_its_schema_and_its_channel() -> None:
    document = asyncapi_document()
    schemas = {"reading": "SenMLPack", "status": "DeviceStatus", "summary": "ZoneSummary",
               "warning": "WarningMessage"}
    for name, (topic, payload) in example_payloads().items():
        validator = _validator(document, schemas[name])
        errors = [e.message for e in validator.iter_errors(payload)]
        assert not errors, (name, errors)
        message = document["components"]["messages"][name]
        assert message["examples"][0]["payload"] == payload
        address = document["channels"][name]["address"]
        pattern = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(address)) + "$"
        assert re.match(pattern, topic), (address, topic)


def test_packs_of_every_metric_fit_the_schema_and_wrong_ones_do_not() -> None:
    validator = _validator(asyncapi_document(), "SenMLPack")
    device = FeedDevice.of("ioc/v1", 1, "0000000000000001", "n", "other", "cam-le", "Cẩm Lệ", 16.0, 108.1)
    assert device is not None
    packer = SenMLPacker()
    for metric in VOCABULARY.values():
        pack = json.loads(packer.pack(device, 1.0, [(metric.id, metric.maximum)]))
        assert validator.is_valid(pack), metric.name
    good = json.loads(packer.pack(device, 1.0, [(VOCABULARY["temperature"].id, 21.5)]))
    wrong_unit = [dict(good[0], u="K"), *good[1:]]
    secret = [good[0], {"n": "app_key", "vs": "00" * 16}, *good[1:]]
    extra_field = [dict(good[0], tags={"owner": "x"}), *good[1:]]
    no_base = [good[1], good[0], *good[2:]]
    for bad in (wrong_unit, secret, extra_field, no_base):
        assert not validator.is_valid(bad)


def test_status_and_summary_schemas_refuse_unknown_fields() -> None:
    document = asyncapi_document()
    examples = example_payloads()
    status = dict(examples["status"][1], tags={"x": "y"})
    assert not _validator(document, "DeviceStatus").is_valid(status)
    summary = dict(examples["summary"][1], devices_private=3)
    assert not _validator(document, "ZoneSummary").is_valid(summary)


def test_the_warning_schema_refuses_what_cap_does_not_allow() -> None:
    document = asyncapi_document()
    payload = example_payloads()["warning"][1]
    validator = _validator(document, "WarningMessage")
    assert validator.is_valid(payload)
    info = payload["data"]["warning"]["info"]
    high = {**payload, "data": {**payload["data"], "warning": {
        **payload["data"]["warning"], "info": [{**info[0], "severity": "High"}, *info[1:]]}}}
    assert not validator.is_valid(high)
    long_text = {**payload, "text": "x" * 401}
    assert not validator.is_valid(long_text)


def test_the_document_is_asyncapi_3_with_every_reference_resolving() -> None:
    document = yaml.safe_load(render_yaml(asyncapi_document()))
    assert document["asyncapi"] == "3.0.0"

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(document):
        target: Any = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
    for channel in document["channels"].values():
        declared = set(channel.get("parameters", {}))
        assert set(re.findall(r"\{([a-z_]+)\}", channel["address"])) == declared
    for operation in document["operations"].values():
        assert operation["action"] == "send"


def test_the_command_writes_the_document(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ioc_cli.app import build_app

    out = tmp_path / "docs" / "asyncapi.yaml"
    done = CliRunner().invoke(build_app(), ["feed", "asyncapi", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_text(encoding="utf-8") == render_yaml(asyncapi_document())


def test_every_metric_is_explained_in_the_document() -> None:
    """A developer meeting `distance` or `occupied` on the feed finds its meaning, unit and range."""
    record = asyncapi_document()["components"]["schemas"]["SenMLRecord"]
    explained = {branch["if"]["properties"]["n"].get("const"): branch for branch in record["allOf"]}
    for metric in VOCABULARY.values():
        branch = explained.get(metric.name)
        assert branch is not None, metric.name
        assert metric.description in branch["description"] and UNIT_NAMES[metric.unit] in branch["description"]
        assert metric.range_text() in branch["description"], metric.name
        assert branch["then"]["properties"]["v"] == {"minimum": metric.minimum, "maximum": metric.maximum}


def test_every_metric_is_explained_in_the_open_data_guide() -> None:
    """docs/open-data.md's metric table has one row per metric of the vocabulary, with its meaning, unit and range."""
    guide = (COMMITTED.parent / "open-data.md").read_text(encoding="utf-8")
    rows = {match[0]: match[1:] for match in re.findall(
        r"^\| `([a-z0-9_]+)` \| (.+?) \| `([^`]+)` \((.+?)\) \| (.+?) \|$", guide, flags=re.MULTILINE)}
    for metric in VOCABULARY.values():
        expected = (metric.description, metric.unit, UNIT_NAMES[metric.unit], metric.range_text())
        assert rows.get(metric.name) == expected, (
            f"docs/open-data.md: the Metrics table needs the row | `{metric.name}` | {metric.description} | "
            f"`{metric.unit}` ({UNIT_NAMES[metric.unit]}) | {metric.range_text()} |")
    assert set(rows) == set(VOCABULARY), "the Metrics table names a metric the vocabulary does not have"
