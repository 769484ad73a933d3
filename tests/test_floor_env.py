"""The declared floors are the tested ones: each package of requirements-floor.txt (the oldest set,
which `make test-floor` installs and tests) is declared in pyproject.toml with that version as its
lower bound, and nothing older is declared."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
#: Colab ships OpenCV's GUI build; the course's optional `video` extra names the headless one (same cv2, same versions).
SAME_PACKAGE = {"opencv-python": "opencv-python-headless"}


def floor_pins() -> dict[str, Version]:
    """requirements-floor.txt as {name: pinned version}."""
    pins = {}
    for line in (ROOT / "requirements-floor.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{line}: the floor set pins exact versions"
            pins[requirement.name.lower()] = Version(specifier.version)
    return pins


def declared_lower_bounds() -> dict[str, Version | None]:
    """pyproject.toml's dependencies and extras as {name: the version after >=, or None}."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [line for extra in project["optional-dependencies"].values() for line in extra]
    bounds = {}
    for line in lines:
        requirement = Requirement(line)
        lower = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        bounds[re.sub(r"[-_.]+", "-", requirement.name).lower()] = lower[0] if lower else None
    return bounds


def test_each_floor_pin_is_the_declared_lower_bound():
    bounds = declared_lower_bounds()
    for name, version in floor_pins().items():
        declared = SAME_PACKAGE.get(name, name)
        assert declared in bounds, f"{name} is in the floor set but pyproject.toml does not declare it"
        assert bounds[declared] == version, f"pyproject.toml declares {declared}>={bounds[declared]}, the floor set tests {version}"


def test_the_floor_is_at_or_below_colabs_torch_2_8_set():
    pins = floor_pins()
    assert pins["torch"] <= Version("2.8.0") and pins["torchvision"] <= Version("0.23.0"), pins
