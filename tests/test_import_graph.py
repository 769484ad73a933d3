"""The shape of course_lib: packages in layers (pyproject.toml's import-linter contract), no import
cycle between modules (imports inside functions count too), argparse only in ``course_lib.cli``, and
every module and function short enough to hold in mind."""

from __future__ import annotations

import ast
import graphlib
import importlib
import tomllib
from pathlib import Path

import pytest

import course_lib

PACKAGE_ROOT = Path(course_lib.__file__).parent
#: The checkout: its pyproject.toml holds the contract (an installed course_lib, as `make test-floor` runs, has none beside it).
ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    """``course_lib/toycity/scene.py`` -> ``course_lib.data.toycity.scene``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}

#: The longest a module may grow: beyond it, split it by concept.
MAX_MODULE_LINES = 350


def imported_modules(name: str, path: Path) -> set[str]:
    """The course_lib modules that ``name`` imports anywhere in its source (``from X import y`` counts
    ``X.y`` where that is a module, else ``X``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names)
    return {target for target in found if target in MODULES and target != name and target != "course_lib"}


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(name, path) for name, path in MODULES.items()}


def test_the_graph_sees_imports_inside_functions_and_relative_imports():
    graph = import_graph()
    assert "course_lib.evaluation.cityscapes_eval" in graph["course_lib.cli.evaluate"]  # a top-level import of the eval CLI
    assert "course_lib.evaluation.mots" in graph["course_lib.tracking.track_metrics"]
    assert "course_lib.data.toycity.scene" in graph["course_lib.data.toycity.dataset"]  # ``from .scene import scene``
    assert "course_lib.data.toycity" in graph["course_lib.deploy.benchmark"]  # ``from course_lib.data.toycity import held_out``


def test_imports_inside_functions_are_seen(tmp_path, monkeypatch):
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from course_lib.data import images\n    return images\n")
    monkeypatch.setitem(MODULES, "course_lib.late", module)
    assert imported_modules("course_lib.late", module) == {"course_lib.data.images"}


LAYERS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]


def test_every_package_and_module_of_course_lib_sits_in_a_layer():
    """A package left out of the contract would escape it: every top-level name of course_lib is in one layer."""
    listed = [name.strip() for layer in LAYERS for name in layer.split("|")]
    top_level = {path.stem if path.is_file() else path.name for path in PACKAGE_ROOT.iterdir()
                 if (path.suffix == ".py" or (path / "__init__.py").is_file()) and not path.name.startswith("__")}
    assert sorted(listed) == sorted(set(listed)), "a name in two layers"
    assert set(listed) == top_level, f"not in a layer: {top_level - set(listed)}; gone: {set(listed) - top_level}"


def test_packages_import_only_from_the_layers_below_them():
    """import-linter's layers contract, as CI runs it: ``lint-imports`` prints the offending import chain."""
    cli = pytest.importorskip("importlinter.cli", reason="import-linter is a development tool (requirements-dev.txt)")
    assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0, "see the broken contract above"


def test_course_lib_modules_import_each_other_without_a_cycle():
    graph = import_graph()
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        pytest.fail(f"import cycle among course_lib modules: {' -> '.join(error.args[1])}")
    assert set(order) >= set(MODULES) - {"course_lib"}


def test_the_command_line_modules_import():
    from course_lib.cli import COMMANDS

    for target in COMMANDS.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function or "cli"))


def test_argparse_lives_in_the_command_line_package_only():
    """Library functions take plain arguments; parsing them is ``course_lib.cli``'s job."""
    parsing = [name for name, path in MODULES.items() if "argparse" in imported_names(path)]
    assert parsing and all(name.startswith("course_lib.cli") for name in parsing), parsing


def test_no_module_is_longer_than_a_reader_holds_in_mind():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these by concept: {long}"


#: The longest a function may grow: beyond it, split it into steps a reader can name.
MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_a_reader_holds_in_mind():
    """Counted from ``def`` to the last line, docstring included; nested functions count in their parent too."""
    long = {f"{name}.{node.name}": node.end_lineno - node.lineno + 1
            for name, path in MODULES.items()
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES}
    assert not long, f"split these into named steps: {long}"


def imported_names(path: Path) -> set[str]:
    """Every top-level package ``path`` imports (``import a.b`` and ``from a.b import c`` give ``a``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names
