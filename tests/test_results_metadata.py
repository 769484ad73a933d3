"""Every committed results file records the command that wrote it and the device it ran on (the README says so)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = sorted((Path(__file__).resolve().parents[1] / "course_lib" / "assets" / "results").glob("*.json"))


def device_of(result: dict) -> str | None:
    return result.get("device") or result.get("training", {}).get("cpu")


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_file_records_command_and_device(path):
    result = json.loads(path.read_text())
    assert result.get("command"), f"{path.name} records no command"
    assert device_of(result), f"{path.name} records no device"


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.name)
def test_module_names_in_files_still_exist(path):
    """A results file that names a course_lib module or class names one that is there (modules move)."""
    import importlib
    import re

    for dotted in set(re.findall(r"course_lib(?:\.[A-Za-z_][A-Za-z0-9_]*)+", path.read_text())):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attribute in parts[cut:]:
                assert hasattr(obj, attribute), f"{path.name} names {dotted}, which does not exist"
                obj = getattr(obj, attribute)
            break
