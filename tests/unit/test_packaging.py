"""pyproject.toml's licence metadata in the form setuptools no longer warns about (PEP 639)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_licence_is_an_spdx_expression_with_its_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    # A table ({text = ...}) makes setuptools print a deprecation warning at every build.
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] and all((ROOT / name).is_file() for name in project["license-files"])
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")[:200]
    # Older setuptools cannot read either key.
    requires = [r for r in pyproject["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", requires[0].replace(" ", ""))
    assert minimum is not None and int(minimum.group(1)) >= 77, requires
