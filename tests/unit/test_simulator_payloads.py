"""Every simulated model's encoder round-trips through its codec folder, and the folders keep the contract."""

from __future__ import annotations

import importlib
import math
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from device_simulators.catalogue import MODELS
from device_simulators.payloads import FORMATS, Values, cayenne_runtime_object, encode, encode_cayenne_th
from ingest.codecs.result import DecodeResult
from ingest.normalise import normalise
from ioc_core.metrics import VOCABULARY

BUILTIN = Path(__file__).resolve().parents[2] / "ingest" / "codecs" / "builtin"
IOC_FOLDERS = sorted(p.name for p in BUILTIN.glob("ioc_*") if p.is_dir())

# Resolution of each decoded field (what one step of its integer encoding is worth).
RESOLUTION = {
    "water_level": 0.001, "flood_depth": 0.001, "distance": 0.001, "battery_voltage": 0.001,
    "rainfall": 0.2, "rain_rate": 0.1, "pm2_5": 0.1, "pm10": 0.1, "co2": 1.0, "temperature": 0.01,
    "humidity": 0.5, "water_temperature": 0.01, "ph": 0.01, "dissolved_oxygen": 0.01, "turbidity": 0.1,
    "conductivity": 0.1, "occupied": 0.0, "fill_level": 1.0, "tilt": 1.0, "lamp_on": 0.0, "dimming": 1.0,
    "power": 0.1, "energy": 0.001,
}  # fmt: skip
COARSER = {("ioc-wb100", "temperature"): 0.1, ("ioc-th100", "temperature"): 0.1,
           ("ioc-th100", "battery_voltage"): 0.01}  # fmt: skip


def _decoder(codec_id: str) -> Callable[[bytes, int], DecodeResult]:
    folder = codec_id.replace("-", "_")
    module: Any = importlib.import_module(f"ingest.codecs.builtin.{folder}.codec")
    decode: Callable[[bytes, int], DecodeResult] = module.decode
    return decode


def _random_values(model_id: str, rng: random.Random) -> dict[str, float]:
    """Plausible values for a model, in the codec's field names."""
    kind = next(m.kind for m in MODELS if m.id == model_id)
    battery = {"battery_voltage": rng.uniform(2.9, 3.7)}
    if kind == "water_level":
        level = rng.uniform(-1.0, 6.0)
        return {"water_level": level, "distance": rng.uniform(0.5, 9.0), **battery}
    if kind == "flood_depth":
        return {"flood_depth": rng.uniform(0.0, 1.5), "distance": rng.uniform(1.5, 3.0), **battery}
    if kind == "rain_gauge":
        return {"rainfall": rng.randrange(0, 300) * 0.2, "rain_rate": rng.uniform(0.0, 150.0), **battery}
    if kind == "air_quality":
        return {"pm2_5": rng.uniform(2, 300), "pm10": rng.uniform(4, 500), "co2": rng.uniform(400, 2000),
                "temperature": rng.uniform(10, 42), "humidity": rng.uniform(20, 100), **battery}
    if kind == "water_quality":
        return {"water_temperature": rng.uniform(15, 35), "ph": rng.uniform(5, 9),
                "dissolved_oxygen": rng.uniform(1, 12), "turbidity": rng.uniform(0, 900),
                "conductivity": rng.uniform(50, 55_000), **battery}
    if kind == "parking":
        return {"occupied": float(rng.random() < 0.5), **battery}
    if kind == "waste_bin":
        return {"fill_level": float(rng.randrange(0, 101)), "temperature": rng.uniform(10, 60),
                "tilt": float(rng.randrange(0, 181)), **battery}
    if kind == "street_light":
        return {"lamp_on": float(rng.random() < 0.5), "dimming": float(rng.randrange(0, 101)),
                "power": rng.uniform(0, 250), "energy": rng.uniform(0, 100_000)}
    return {"temperature": rng.uniform(-10, 45), "humidity": rng.uniform(5, 100), **battery}


def _assert_round_trip(model_id: str, values: Values, decoded: dict[str, Any]) -> None:
    for name, value in values.items():
        if name not in RESOLUTION:
            continue
        key = name
        if model_id == "ioc-th100":  # Cayenne LPP names carry the channel
            key = {"temperature": "temperature_1", "humidity": "relative_humidity_2",
                   "battery_voltage": "analog_in_3"}[name]  # fmt: skip
        step = COARSER.get((model_id, name), RESOLUTION[name])
        assert math.isclose(decoded[key], value, abs_tol=step / 2 + 1e-9), (model_id, name, value, decoded)


@pytest.mark.parametrize("model_id", sorted(FORMATS))
def test_encode_then_decode_gives_the_values_back(model_id: str) -> None:
    fmt = FORMATS[model_id]
    if fmt.codec_id == "cayenne-lpp" and not (BUILTIN / "cayenne_lpp" / "codec.py").exists():
        pytest.skip("the cayenne-lpp codec folder is not there yet")
    decode = _decoder(fmt.codec_id)
    rng = random.Random(model_id)
    for _ in range(300):
        values = _random_values(model_id, rng)
        result = decode(encode(model_id, values), fmt.fport)
        assert result.ok and not result.warnings, result
        _assert_round_trip(model_id, values, result.data)


@pytest.mark.parametrize("model_id", sorted(m for m in FORMATS if FORMATS[m].codec_id != "cayenne-lpp"))
def test_decoded_fields_are_metrics(model_id: str) -> None:
    values = _random_values(model_id, random.Random(1))
    fmt = FORMATS[model_id]
    normalised = normalise(_decoder(fmt.codec_id)(encode(model_id, values), fmt.fport).data)
    assert not normalised.unmapped
    assert {r.metric.name for r in normalised.readings} == set(values) & set(VOCABULARY)


def test_values_beyond_a_field_saturate() -> None:
    decode = _decoder("ioc-water-level")
    data = decode(encode("ioc-wl100", {"water_level": 99.0, "distance": -1.0, "battery_voltage": 3.6}), 10).data
    assert data["water_level"] == 32.767 and data["distance"] == 0.0
    wq = _decoder("ioc-water-quality")(encode("ioc-wq100", {"ph": math.nan, "battery_voltage": 3.6}), 13)
    assert wq.data["ph"] == 655.35


def test_flags_reach_the_codec() -> None:
    wl = _decoder("ioc-water-level")(encode("ioc-fd100", {"flood_depth": 0.3, "sensor_fault": 1.0}), 10)
    assert "flood_depth" not in wl.data and wl.data["status"] == "fault" and wl.warnings
    alarm = _decoder("ioc-water-level")(encode("ioc-wl100", {"water_level": 2.0, "alarm": 1.0}), 10)
    assert alarm.data["status"] == "alarm"
    bin_ = _decoder("ioc-waste-bin")(encode("ioc-wb100", {"fill_level": math.nan, "fire": 1.0}), 15)
    assert "fill_level" not in bin_.data and bin_.data["status"] == "fire"
    light = _decoder("ioc-street-light")(encode("ioc-sl100", {"lamp_on": 1.0, "lamp_failure": 1.0}), 16)
    assert light.data["status"] == "lamp_failure" and light.data["lamp_on"] == 1
    parking = _decoder("ioc-parking")(encode("ioc-pk100", {"occupied": 1.0, "change": 1.0}), 14)
    assert parking.data["trigger"] == "change" and parking.data["occupied"] == 1


def test_cayenne_bytes_are_standard_lpp() -> None:
    payload = encode_cayenne_th({"temperature": 28.2, "humidity": 61.0, "battery_voltage": 3.61})
    assert payload.hex() == "0167011a02687a03020169"


def test_cayenne_runtime_object_is_chirpstacks() -> None:
    payload = encode_cayenne_th({"temperature": -4.5, "humidity": 61.0, "battery_voltage": 3.61})
    assert cayenne_runtime_object(payload) == {
        "temperatureSensor": {"1": -4.5},
        "humiditySensor": {"2": 61.0},
        "analogInput": {"3": 3.61},
    }
    assert cayenne_runtime_object(payload[:-1]) is None  # a value cut short fails the codec
    assert cayenne_runtime_object(payload + b"\x05") == cayenne_runtime_object(payload)  # lone byte ignored
    assert cayenne_runtime_object(b"\x01\x99\x00") is None  # type ChirpStack does not know
    assert normalise({"temperatureSensor": {"1": 28.2}, "humiditySensor": {"2": 61.0}}).readings


# --- the folder contract the codec library relies on ----------------------------------------------------


@pytest.mark.parametrize("folder", IOC_FOLDERS)
def test_codec_folder_contract(folder: str) -> None:
    path = BUILTIN / folder
    assert {p.name for p in path.iterdir() if not p.name.startswith("__pycache__")} >= {
        "__init__.py", "manifest.yaml", "codec.py", "examples.yaml"}  # fmt: skip
    manifest = yaml.safe_load((path / "manifest.yaml").read_text(encoding="utf-8"))
    assert re.fullmatch(r"[a-z0-9-]+", manifest["id"]) and manifest["id"].replace("-", "_") == folder
    assert manifest["name"] and manifest["description"]
    assert all(isinstance(p, int) for p in manifest["fports"])
    for model_id in manifest["models"]:
        assert FORMATS[model_id].codec_id == manifest["id"]
        assert FORMATS[model_id].fport in manifest["fports"]


@pytest.mark.parametrize("folder", IOC_FOLDERS)
def test_codec_examples(folder: str) -> None:
    decode = _decoder(folder)
    document = yaml.safe_load((BUILTIN / folder / "examples.yaml").read_text(encoding="utf-8"))
    examples = document["uplinkDecoder"]["examples"]
    assert any("errors" in e["output"] for e in examples), "needs at least one error example"
    for example in examples:
        given = example["input"]
        payload = bytes.fromhex(given["hex"]) if "hex" in given else bytes(given["bytes"])
        result = decode(payload, given["fPort"])
        if "errors" in example["output"]:
            assert not result.ok
            for wanted in example["output"]["errors"]:
                assert any(wanted in error for error in result.errors), (example["description"], result)
            continue
        assert result.ok, (example["description"], result)
        assert result.data == example["output"]["data"], example["description"]
        assert list(result.warnings) == example["output"].get("warnings", [])
        measured = {r.metric.name: r.value for r in normalise(result.data).readings}
        assert measured == example["measurements"], example["description"]


@pytest.mark.parametrize("folder", IOC_FOLDERS)
def test_codecs_never_raise(folder: str) -> None:
    decode = _decoder(folder)
    rng = random.Random(folder)
    for _ in range(2000):
        payload = rng.randbytes(rng.randrange(0, 24))
        result = decode(payload, rng.choice((0, 1, 10, 11, 12, 13, 14, 15, 16, 255)))
        assert isinstance(result, DecodeResult)
