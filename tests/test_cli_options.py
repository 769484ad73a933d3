"""course_lib.cli: mistakes raise the library's UserError (one line from ``python -m course_lib``), and
parsed options are read, never rewritten."""

from __future__ import annotations

import pytest

from course_lib import deploy
from course_lib.cli import export, main, options
from course_lib.errors import BadInput, MissingPackage


def test_export_refuses_an_unknown_runtime_with_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(deploy, "available", lambda: True)  # the runtime name is checked before any package is used
    with pytest.raises(BadInput, match="--runtime nope: choose one of ort"):
        export.cli(["--runtime", "nope", "--out", str(tmp_path / "m.onnx")])
    assert main(["export", "--runtime", "nope", "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --runtime nope") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_export_without_the_deployment_packages_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(deploy, "available", lambda: False)
    with pytest.raises(MissingPackage, match=r"pip install 'course_lib\[deploy\]'"):
        export.cli(["--out", str(tmp_path / "m.onnx")])
    assert main(["export", "--out", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(("data", "given", "purpose", "split"), [
    ("coco", None, "eval", "val2017"), ("cityscapes", None, "train", "train"), ("cityscapes", "test", "eval", "test"),
    ("toycity", None, "eval", None),
])
def test_the_split_is_derived_and_the_parsed_options_stay_as_given(data, given, purpose, split):
    parser = options.ArgumentParser(prog="test")
    options.add_dataset_arguments(parser, toycity_length=2, toycity_seed=0)
    args = parser.parse_args(["--data", data] + (["--split", given] if given else []))
    before = vars(args).copy()
    assert options.split_from_arguments(args, purpose) == split
    assert vars(args) == before


def test_a_commands_first_import_runs_with_the_cycle_collector_paused_and_leaves_it_as_found(tmp_path, monkeypatch):
    import gc
    import sys

    import course_lib.cli

    (tmp_path / "fake_command.py").write_text(
        "import gc\nCOLLECTING_WHILE_IMPORTED = gc.isenabled()\ndef cli(argv):\n    return 3 if gc.get_freeze_count() else 4\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(course_lib.cli.COMMANDS, "fake", "fake_command")
    monkeypatch.delitem(sys.modules, "fake_command", raising=False)
    assert gc.isenabled()
    assert main(["fake"]) == 3, "what the import made stays frozen while the command runs"
    assert sys.modules["fake_command"].COLLECTING_WHILE_IMPORTED is False
    assert gc.isenabled() and gc.get_freeze_count() == 0, "collected again afterwards"
    assert main(["fake"]) == 4, "an imported command is not imported (nor anything frozen) again"
