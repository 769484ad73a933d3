"""Each command's settings object (course_lib.engine.settings, course_lib.cli.settings): every
field's range is refused on the command line in one line before any work, from Python when the object is
made, and the parser's defaults are the object's."""

from __future__ import annotations

import dataclasses
import math

import pytest

from course_lib.cli import main, options
from course_lib.cli.settings import BenchSettings, EvalSettings, ExportSettings, VideoSettings
from course_lib.engine.recipes import RECIPES
from course_lib.engine.settings import TrainSettings, flag
from course_lib.errors import BadInput
from test_bad_input import TOYCITY, one_error_line

#: command -> (its settings class, the least it needs besides them: inputs and outputs)
COMMANDS = {
    "train": (TrainSettings, ["train", *TOYCITY, "--steps", "1", "--out", "run"]),
    "eval": (EvalSettings, ["eval", *TOYCITY, "--model", "toycity"]),
    "video": (VideoSettings, ["video", "in.mp4", "out.mp4"]),
    "bench": (BenchSettings, ["bench"]),
    "export": (ExportSettings, ["export", "--out", "model.onnx"]),
}


def out_of_range(field: dataclasses.Field) -> list[tuple[str, object, str]]:
    """(command-line text, Python value, what the one line says) for values just outside ``field``'s range."""
    bounds, choices, kind = field.metadata["bounds"], field.metadata["choices"], field.type.removesuffix(" | None")
    if choices:
        return [("bogus", "bogus", "invalid choice: 'bogus'")]
    if bounds is None:
        return []
    numbers = [bounds.low if bounds.low_open else bounds.low - 1] if bounds.low is not None else []
    numbers += [bounds.high + 0.5 if kind == "float" else bounds.high + 1] if bounds.high is not None else []
    numbers = [int(n) if kind != "float" else float(n) for n in numbers]
    if kind == "tuple[int, int]":  # a size: either side too small
        low = numbers[0]
        return [(f"{low}x256", (low, 256), "expected HxW"), (f"256x{low}", (256, low), "expected HxW")]
    cases = [(f"{n:g}", n, "got") for n in numbers]
    return cases + ([("nan", math.nan, "must be a finite number")] if kind == "float" else [])


CASES = [pytest.param(command, field, text, value, expected, id=f"{command} {flag(field.name)} {text}")
         for command, (settings, _) in COMMANDS.items() for field in dataclasses.fields(settings)
         for text, value, expected in out_of_range(field)]


def test_every_numeric_field_and_choice_has_out_of_range_cases():
    covered = {(command, field.name) for command, field, *_ in (case.values for case in CASES)}
    declared = {(command, field.name) for command, (settings, _) in COMMANDS.items() for field in dataclasses.fields(settings)
                if field.metadata["bounds"] or field.metadata["choices"]}
    assert covered == declared and len(declared) > 20


@pytest.fixture
def refuse_work(monkeypatch):
    """The commands' work fails loudly: an out-of-range value must stop them while parsing."""
    from course_lib import zoo
    from course_lib.cli import video
    from course_lib.engine import distributed

    def forbidden(*args, **kwargs):
        raise AssertionError("the command started working with a value out of range")

    for module, name in ((zoo, "from_command_line"), (distributed, "launch"), (video, "read_frames"),
                         (video, "write_toycity_clip")):
        monkeypatch.setattr(module, name, forbidden)


@pytest.mark.parametrize("command, field, text, value, expected", CASES)
def test_a_value_out_of_range_is_one_line_on_the_command_line_and_from_python(tmp_path, monkeypatch, capsys, refuse_work,
                                                                              command, field, text, value, expected):
    settings, needed = COMMANDS[command]
    monkeypatch.chdir(tmp_path)
    assert main([*needed, flag(field.name), text]) == 2
    line = one_error_line(capsys)
    assert f"argument {flag(field.name)}" in line and expected in line, line
    assert list(tmp_path.iterdir()) == []
    given = {"steps": 1} if settings is TrainSettings else {}
    with pytest.raises(BadInput, match=f"^{flag(field.name)} must"):
        settings(**{**given, field.name: value})


class Parsed(Exception):
    """Raised in place of making the settings: the test stops the command there."""


@pytest.mark.parametrize("command", COMMANDS)
def test_the_parser_defaults_are_the_settings_defaults(monkeypatch, command):
    settings, needed = COMMANDS[command]

    def capture(cls, args):
        raise Parsed({field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})

    monkeypatch.setattr(options, "settings_from_arguments", capture)
    with pytest.raises(Parsed) as parsed:
        main(needed)
    given = {"steps": 1} if settings is TrainSettings else {}
    made = settings(**{**RECIPES["finetune"], **given}) if settings is TrainSettings else settings()
    assert parsed.value.args[0] == {**dataclasses.asdict(made), **given}


def test_a_fast_mode_default_is_read_when_the_settings_are_made(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    full = BenchSettings()
    monkeypatch.setenv("COURSE_FAST", "1")
    fast = BenchSettings()
    assert (full.repeats, full.val, full.calibration) == (30, 100, 64)
    assert (fast.repeats, fast.val, fast.calibration) == (3, 4, 2)


def test_settings_are_frozen_and_record_as_plain_values():
    settings = ExportSettings(size=(64, 128), min_agreement=0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.check = 0
    assert dataclasses.asdict(settings) == {"runtime": "ov_fp32", "size": (64, 128), "calibration": 64, "check": 4,
                                            "min_agreement": 0.9}
