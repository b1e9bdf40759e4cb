"""The codec library: built-in codec folders and operator JavaScript codecs, discovered and checked once."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.codecs.breaker import CodecHealth
from ingest.codecs.errors import CodecLoadError, ExamplesError, UnknownCodecError
from ingest.codecs.examples import load_examples
from ingest.codecs.js_runtime import JsCodec, JsLimits, JsRuntime
from ingest.codecs.result import DecodeResult

__all__ = [
    "BUILTIN_PACKAGE",
    "BuiltinCodec",
    "Codec",
    "CodecInfo",
    "CodecKind",
    "CodecLibrary",
    "Manifest",
]

BUILTIN_PACKAGE = "ingest.codecs.builtin"
MANIFEST_FILE = "manifest.yaml"
CODEC_FILE = "codec.py"
EXAMPLES_FILE = "examples.yaml"

CodecKind = Literal["builtin", "javascript"]
DecodeFunction = Callable[[bytes, int], DecodeResult]


class Codec(Protocol):
    """Anything that turns one uplink payload into a ``DecodeResult``; it never raises on bad input."""

    @property
    def id(self) -> str: ...

    def decode(
        self,
        payload: bytes,
        fport: int,
        *,
        recv_time: datetime | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> DecodeResult: ...


class AheadUplink(Protocol):
    """What ``CodecLibrary.decode_ahead`` reads of an uplink event (ChirpStack's ``UplinkEvent``)."""

    @property
    def encrypted(self) -> bool: ...

    @property
    def object(self) -> Any: ...

    @property
    def f_port(self) -> int: ...

    @property
    def time(self) -> datetime | None: ...

    def payload(self) -> bytes: ...


class Manifest(BaseModel):
    """``manifest.yaml`` of a built-in codec folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)
    name: str = Field(min_length=1)
    description: str = ""
    models: tuple[str, ...] = ()
    # Informational: the ports the codec is written for (empty = any); the codec itself rejects others.
    fports: tuple[Annotated[int, Field(ge=0, le=255)], ...] = ()


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """What ``ioc codecs list`` shows and the generated tests iterate over."""

    id: str
    kind: CodecKind
    name: str
    source: Path
    models: tuple[str, ...] = ()
    description: str = ""
    fports: tuple[int, ...] = ()
    examples: Path | None = None


@dataclass(frozen=True, slots=True)
class BuiltinCodec:
    """A built-in codec folder's ``decode`` function behind the ``Codec`` interface."""

    manifest: Manifest
    function: DecodeFunction
    folder: Path

    @property
    def id(self) -> str:
        return self.manifest.id

    def decode(
        self,
        payload: bytes,
        fport: int,
        *,
        recv_time: datetime | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> DecodeResult:
        # Built-in codecs are pure functions of (payload, fPort); time and variables are for JS codecs.
        try:
            result = self.function(payload, fport)
        except Exception as err:  # a bug in the codec: the uplink still ends as a dead letter with a reason
            return DecodeResult.failure(f"codec {self.id} raised {type(err).__name__}: {err}")
        if not isinstance(result, DecodeResult):
            kind = type(result).__name__
            return DecodeResult.failure(f"codec {self.id} returned {kind}, not a DecodeResult")
        return result


@dataclass(frozen=True, slots=True)
class _Entry:
    codec: Codec
    info: CodecInfo


@dataclass(frozen=True, slots=True)
class CodecLibrary:
    """Codecs by id, built once at start-up; look-ups never touch the file system."""

    _entries: Mapping[str, _Entry] = field(repr=False)
    _by_model: Mapping[str, str] = field(repr=False)
    # The worker pool and breakers the JavaScript codecs share; None when there are none.
    js_runtime: JsRuntime | None = field(default=None, repr=False)

    @classmethod
    def of(cls, codecs: list[tuple[Codec, CodecInfo]], js_runtime: JsRuntime | None = None) -> CodecLibrary:
        """Build a library from ready codecs, refusing duplicate ids and models claimed twice."""
        entries: dict[str, _Entry] = {}
        by_model: dict[str, str] = {}
        for codec, info in codecs:
            if info.id != codec.id:
                raise CodecLoadError(f"{info.source}: codec id {codec.id!r} differs from {info.id!r}")
            if info.id in entries:
                first = entries[info.id].info.source
                raise CodecLoadError(f"duplicate codec id {info.id!r}: {first} and {info.source}")
            entries[info.id] = _Entry(codec, info)
            for model in info.models:
                if model in by_model:
                    raise CodecLoadError(
                        f"device model {model!r} is claimed by codecs {by_model[model]!r} and {info.id!r}"
                    )
                by_model[model] = info.id
        return cls(MappingProxyType(entries), MappingProxyType(by_model), js_runtime)

    @classmethod
    def discover(
        cls,
        *,
        js_dir: Path | None = None,
        js_limits: JsLimits | None = None,
        builtin_package: str = BUILTIN_PACKAGE,
        builtin_root: Path | None = None,
    ) -> CodecLibrary:
        """Load every built-in codec folder and every ``*.js`` file in ``js_dir``.

        Each built-in folder must hold a valid ``manifest.yaml``, an importable ``codec.py`` with
        ``decode(payload, fport)`` and an ``examples.yaml`` with at least one error case. JavaScript
        codecs get the id ``js:<file name>``; a ``<name>.yaml`` beside one holds its examples. Any
        problem raises ``CodecLoadError`` naming the file. ``builtin_package``/``builtin_root`` let
        tests point at another package.
        """
        codecs = _discover_builtins(builtin_package, builtin_root)
        runtime = None
        if js_dir is not None:
            # Only an object here: its worker processes start on the first decode.
            runtime = JsRuntime(js_limits or JsLimits())
            codecs.extend(_discover_js(js_dir, runtime))
        return cls.of(codecs, runtime)

    def decode_ahead(self, uplinks: Iterable[tuple[str | None, AheadUplink]]) -> None:
        """Decode the JavaScript uplinks of a batch in parallel now; ``get(id).decode`` then finds them.

        ``uplinks`` pairs each uplink with its device's codec id. Only uplinks the pipeline will decode
        (not encrypted, no ChirpStack ``object``, a non-zero port and a payload) are taken; a guess
        that misses costs one decode, never a wrong result, because results are found by payload, port
        and time. Built-in codecs are cheaper in line and are left alone.
        """
        if self.js_runtime is None:
            return  # without looking at ``uplinks``: a library of built-ins pays nothing
        jobs: list[tuple[JsCodec, bytes, int, datetime | None]] = []
        for codec_id, event in uplinks:
            entry = self._entries.get(codec_id) if codec_id else None
            if entry is None or not isinstance(entry.codec, JsCodec):
                continue
            if event.encrypted or event.object is not None or event.f_port == 0:
                continue
            try:
                payload = event.payload()
            except Exception:  # the pipeline dead-letters it with the reason
                continue
            if payload:
                jobs.append((entry.codec, payload, event.f_port, event.time))
        self.js_runtime.decode_ahead(jobs)

    @property
    def health(self) -> CodecHealth | None:
        """Timeouts, crashes, memory exhaustion and disabled codecs of the JavaScript codecs, if any."""
        return None if self.js_runtime is None else self.js_runtime.health

    def close(self) -> None:
        """Stop the JavaScript worker processes, if any ran."""
        if self.js_runtime is not None:
            self.js_runtime.close()

    def get(self, codec_id: str) -> Codec:
        entry = self._entries.get(codec_id)
        if entry is None:
            raise UnknownCodecError(codec_id)
        return entry.codec

    def info(self, codec_id: str) -> CodecInfo:
        entry = self._entries.get(codec_id)
        if entry is None:
            raise UnknownCodecError(codec_id)
        return entry.info

    def infos(self) -> list[CodecInfo]:
        """All codecs, built-ins first, each group sorted by id."""
        return sorted((e.info for e in self._entries.values()), key=lambda i: (i.kind != "builtin", i.id))

    def codec_for_model(self, model_id: str) -> Codec | None:
        """The codec whose manifest lists this device model, if any."""
        codec_id = self._by_model.get(model_id)
        return None if codec_id is None else self._entries[codec_id].codec

    def __contains__(self, codec_id: object) -> bool:
        return codec_id in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _discover_builtins(package: str, root: Path | None) -> list[tuple[Codec, CodecInfo]]:
    if root is None:
        try:
            module = importlib.import_module(package)
        except Exception as err:
            raise CodecLoadError(f"cannot import the codec package {package!r}: {err}") from err
        paths = list(getattr(module, "__path__", []))
        if not paths:
            raise CodecLoadError(f"{package!r} is not a package")
        root = Path(paths[0])
    codecs: list[tuple[Codec, CodecInfo]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.startswith(("_", ".")):
            continue
        # A folder holding nothing but __pycache__ is what a deleted codec leaves behind in a checkout.
        if all(child.name == "__pycache__" for child in folder.iterdir()):
            continue
        codecs.append(_load_builtin(folder, package))
    return codecs


def _load_builtin(folder: Path, package: str) -> tuple[Codec, CodecInfo]:
    if not folder.name.isidentifier():
        raise CodecLoadError(f"{folder}: a codec folder name must be a Python identifier (e.g. cayenne_lpp)")
    for required in (MANIFEST_FILE, CODEC_FILE, EXAMPLES_FILE):
        if not (folder / required).is_file():
            raise CodecLoadError(f"{folder}: missing {required}")
    manifest = _read_manifest(folder / MANIFEST_FILE)
    module_name = f"{package}.{folder.name}.codec"
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise CodecLoadError(f"{folder}: cannot import {module_name}: {type(err).__name__}: {err}") from err
    function = getattr(module, "decode", None)
    if not callable(function):
        raise CodecLoadError(f"{folder}: {module_name} has no decode(payload, fport) function")
    examples_path = folder / EXAMPLES_FILE
    examples = load_examples(examples_path)
    if not examples:
        raise ExamplesError(f"{examples_path}: has no examples")
    if not any(example.expects_failure for example in examples):
        raise ExamplesError(f"{examples_path}: needs at least one example that expects errors")
    codec = BuiltinCodec(manifest=manifest, function=function, folder=folder)
    info = CodecInfo(
        id=manifest.id,
        kind="builtin",
        name=manifest.name,
        source=folder,
        models=manifest.models,
        description=manifest.description,
        fports=manifest.fports,
        examples=examples_path,
    )
    return codec, info


def _read_manifest(path: Path) -> Manifest:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise CodecLoadError(f"{path}: cannot read: {err}") from err
    if not isinstance(raw, dict):
        raise CodecLoadError(f"{path}: expected a mapping with id, name, description, models, fports")
    try:
        return Manifest.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in problem['loc']) or '(root)'}: {problem['msg']}"
            for problem in err.errors()
        )
        raise CodecLoadError(f"{path}: bad manifest: {problems}") from err


def _discover_js(js_dir: Path, runtime: JsRuntime) -> list[tuple[Codec, CodecInfo]]:
    if not js_dir.is_dir():
        raise CodecLoadError(f"JavaScript codec folder {js_dir} (IOC_CODEC_DIR) is not a folder")
    codecs: list[tuple[Codec, CodecInfo]] = []
    for path in sorted(js_dir.glob("*.js")):
        codec = JsCodec.load(path, runtime=runtime)
        examples = codec.examples_path
        if examples is not None:
            load_examples(examples)
        info = CodecInfo(
            id=codec.id,
            kind="javascript",
            name=path.stem,
            source=path,
            description=codec.flavour.description,
            examples=examples,
        )
        codecs.append((codec, info))
    return codecs
