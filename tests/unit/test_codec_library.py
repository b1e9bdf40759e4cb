"""The library discovers codec folders once, validates them, and fails loudly on a broken one."""

from __future__ import annotations

import itertools
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.codecs.errors import CodecLoadError, ExamplesError, UnknownCodecError
from ingest.codecs.js_runtime import JsLimits
from ingest.codecs.library import BuiltinCodec, CodecLibrary, Manifest
from ingest.codecs.result import DecodeResult
from ioc_core.errors import ConfigError, FatalError, SkippableError

JS_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "js_codecs"

GOOD_CODEC = '''"""A test codec: one byte, its value."""
from ingest.codecs.result import DecodeResult


def decode(payload: bytes, fport: int) -> DecodeResult:
    if len(payload) != 1:
        return DecodeResult.failure(f"expected 1 byte, got {len(payload)}")
    return DecodeResult(data={"value": payload[0]})
'''
GOOD_EXAMPLES = """uplinkDecoder:
  examples:
    - description: one byte
      input: {fPort: 1, hex: "2A"}
      output: {data: {value: 42}}
    - description: two bytes
      input: {fPort: 1, hex: "2A2A"}
      output: {errors: [expected 1 byte]}
"""
_names = itertools.count()

MakeCodec = Callable[..., Path]


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """An importable package of codec folders under tmp_path, with a name no other test uses."""
    name = f"ioc_test_codecs_{next(_names)}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text('"""Test codecs."""\n', encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, root
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


@pytest.fixture
def make_codec(package: tuple[str, Path]) -> MakeCodec:
    _, root = package

    def make(
        folder: str,
        codec_id: str | None = None,
        *,
        manifest: str | None = None,
        codec: str = GOOD_CODEC,
        examples: str | None = GOOD_EXAMPLES,
        models: str = "[]",
    ) -> Path:
        path = root / folder
        path.mkdir()
        (path / "__init__.py").write_text('"""Codec folder."""\n', encoding="utf-8")
        if manifest is None:
            manifest = (
                f"id: {codec_id or folder.replace('_', '-')}\nname: Test {folder}\n"
                f"description: a test codec\nmodels: {models}\nfports: [1]\n"
            )
        (path / "manifest.yaml").write_text(manifest, encoding="utf-8")
        (path / "codec.py").write_text(codec, encoding="utf-8")
        if examples is not None:
            (path / "examples.yaml").write_text(examples, encoding="utf-8")
        return path

    return make


def discover(package: tuple[str, Path]) -> CodecLibrary:
    return CodecLibrary.discover(builtin_package=package[0])


def test_discovers_folders_and_serves_lookups(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("alpha", models="[model-a, model-b]")
    make_codec("beta_two")
    library = discover(package)
    assert sorted(library) == ["alpha", "beta-two"] and len(library) == 2
    assert "alpha" in library and "gamma" not in library
    assert library.get("alpha").decode(b"\x2a", 1) == DecodeResult(data={"value": 42})
    info = library.info("beta-two")
    assert (info.kind, info.name, info.fports) == ("builtin", "Test beta_two", (1,))
    assert info.source == package[1] / "beta_two"
    assert library.codec_for_model("model-b") is library.get("alpha")
    assert library.codec_for_model("model-z") is None
    assert [i.id for i in library.infos()] == ["alpha", "beta-two"]


def test_lookups_never_rescan(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    folder = make_codec("alpha")
    library = discover(package)
    shutil.rmtree(folder)
    assert library.get("alpha").decode(b"\x01", 1).data == {"value": 1}


def test_unknown_codec_is_a_skippable_key_error(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("alpha")
    library = discover(package)
    with pytest.raises(UnknownCodecError) as caught:
        library.get("nope")
    err = caught.value
    assert isinstance(err, KeyError) and isinstance(err, SkippableError)
    assert (err.stage, err.codec_id, str(err)) == ("decode", "nope", "unknown codec 'nope'")


def test_duplicate_id_fails(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("alpha", "same")
    make_codec("beta", "same")
    with pytest.raises(CodecLoadError, match="duplicate codec id 'same'"):
        discover(package)


def test_model_claimed_twice_fails(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("alpha", models="[shared]")
    make_codec("beta", models="[shared]")
    with pytest.raises(CodecLoadError, match="'shared' is claimed by codecs 'alpha' and 'beta'"):
        discover(package)


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        ("def decode(payload, fport:\n", "cannot import .*SyntaxError"),
        ("import no_such_module_anywhere\n", "cannot import .*ModuleNotFoundError"),
        ("raise RuntimeError('at import')\n", "cannot import .*RuntimeError: at import"),
        ("x = 1\n", "has no decode"),
    ],
)
def test_broken_import_fails(
    package: tuple[str, Path], make_codec: MakeCodec, codec: str, message: str
) -> None:
    make_codec("alpha", codec=codec)
    with pytest.raises(CodecLoadError, match=message):
        discover(package)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("id: Alpha\nname: A\n", "bad manifest: id"),
        ("id: -alpha\nname: A\n", "bad manifest: id"),
        ("id: alpha\n", "bad manifest: name"),
        ("id: alpha\nname: A\nfports: [256]\n", "bad manifest: fports.0"),
        ("id: alpha\nname: A\nmodels: model-a\n", "bad manifest: models"),
        ("id: alpha\nname: A\ncolour: red\n", "bad manifest: colour"),
        ("- id: alpha\n", "expected a mapping"),
        ("id: [alpha\n", "cannot read"),
    ],
)
def test_bad_manifest_fails(
    package: tuple[str, Path], make_codec: MakeCodec, manifest: str, message: str
) -> None:
    make_codec("alpha", manifest=manifest)
    with pytest.raises(CodecLoadError, match=message) as caught:
        discover(package)
    assert "manifest.yaml" in str(caught.value)


def test_missing_files_fail(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("alpha", examples=None)
    with pytest.raises(CodecLoadError, match=r"alpha: missing examples\.yaml"):
        discover(package)


def test_examples_need_an_error_case(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    only_success = GOOD_EXAMPLES.split("    - description: two bytes")[0]
    make_codec("alpha", examples=only_success)
    with pytest.raises(ExamplesError, match="at least one example that expects errors"):
        discover(package)


def test_malformed_examples_fail(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("alpha", examples="uplinkDecoder:\n  examples:\n    - input: {fPort: 1}\n")
    with pytest.raises(ExamplesError, match="exactly one of 'bytes'"):
        discover(package)


def test_folder_name_must_be_an_identifier(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("bad-name", "bad-name")
    with pytest.raises(CodecLoadError, match="Python identifier"):
        discover(package)


def test_private_and_leftover_folders_are_skipped(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("alpha")
    (package[1] / "_shared").mkdir()
    (package[1] / "removed" / "__pycache__").mkdir(parents=True)
    assert list(discover(package)) == ["alpha"]


def test_an_alternate_root_can_be_given(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("alpha")
    library = CodecLibrary.discover(builtin_package=package[0], builtin_root=package[1])
    assert list(library) == ["alpha"]


def test_errors_are_configuration_errors() -> None:
    assert issubclass(CodecLoadError, ConfigError) and issubclass(CodecLoadError, FatalError)
    assert issubclass(ExamplesError, CodecLoadError)
    with pytest.raises(CodecLoadError, match="cannot import the codec package"):
        CodecLibrary.discover(builtin_package="no_such_package_for_codecs")


def test_builtin_wrapper_turns_bugs_into_errors(tmp_path: Path) -> None:
    def raising(payload: bytes, fport: int) -> DecodeResult:
        raise IndexError("index out of range")

    def wrong_type(payload: bytes, fport: int) -> DecodeResult:
        return {"data": {}}  # type: ignore[return-value]

    manifest = Manifest(id="buggy", name="Buggy")
    result = BuiltinCodec(manifest, raising, tmp_path).decode(b"", 1)
    assert result.errors == ("codec buggy raised IndexError: index out of range",)
    result = BuiltinCodec(manifest, wrong_type, tmp_path).decode(b"", 1)
    assert result.errors == ("codec buggy returned dict, not a DecodeResult",)


def test_js_codecs_join_the_registry(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("alpha")
    library = CodecLibrary.discover(
        builtin_package=package[0], js_dir=JS_FIXTURES, js_limits=JsLimits(time_limit_ms=50)
    )
    assert "js:tts_environment" in library and "alpha" in library
    info = library.info("js:chirpstack_v3_rain")
    assert info.kind == "javascript" and info.name == "chirpstack_v3_rain"
    assert info.source == JS_FIXTURES / "chirpstack_v3_rain.js"
    assert info.examples == JS_FIXTURES / "chirpstack_v3_rain.yaml"
    assert "ChirpStack v3" in info.description
    kinds = [i.kind for i in library.infos()]
    assert kinds == sorted(kinds, key=lambda k: k != "builtin")
    decoded = library.get("js:tts_environment").decode(bytes.fromhex("08CA960E10"), 1)
    assert decoded.data["temperature"] == 22.5


def test_js_file_that_does_not_compile_fails(package: tuple[str, Path], make_codec: MakeCodec) -> None:
    make_codec("alpha")
    with pytest.raises(CodecLoadError, match=r"syntax_error\.js: JavaScript does not load: SyntaxError"):
        CodecLibrary.discover(builtin_package=package[0], js_dir=JS_FIXTURES / "broken")


def test_missing_js_dir_fails(tmp_path: Path) -> None:
    with pytest.raises(CodecLoadError, match="IOC_CODEC_DIR"):
        CodecLibrary.discover(js_dir=tmp_path / "absent")


def test_the_real_builtins_load() -> None:
    library = CodecLibrary.discover()
    assert "cayenne-lpp" in library
    assert all(info.kind == "builtin" for info in library.infos())
