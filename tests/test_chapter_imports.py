"""What a chapter imports, its first cell installs on Colab.

Every third-party module that a chapter imports, or that a ``course_lib`` module it reaches imports
(at module level or inside a function), must come from one of:

- what Colab has before the first cell runs: the oldest supported set, ``requirements-floor.txt``
  (torch, torchvision, numpy, matplotlib, OpenCV, ...), and the Jupyter kernel (``ipykernel``);
- the course as the first cell installs it, ``pip install course_lib[extras] @ git+...``: its
  dependencies as the installed metadata declares them, with theirs;
- a package the first cell installs with ``--no-deps`` (TrackEval), at the version installed here.

The imports are read with ``ast`` from the chapter's ``py:percent`` twin and from the installed
``course_lib``; the metadata is the installed distributions'. The check means something only where
``course_lib`` is installed as Colab installs it (non-editable): ``make test-floor`` runs it there.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as metadata
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in ROOT.glob("book/**/*.py") if p.with_suffix(".ipynb").exists())
COURSE_LIB = Path(importlib.util.find_spec("course_lib").origin).parent
COURSE_URL = "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"
#: Imports whose top-level package is preinstalled but which load another distribution.
SUBMODULE_NEEDS = {"torch.utils.tensorboard": "tensorboard"}


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def first_code_cell(chapter: Path) -> str:
    """The source of the chapter's first code cell (the ``# %%`` header line excluded)."""
    cells = re.split(r"(?m)^# %%", chapter.read_text())[1:]
    code = next(cell for cell in cells if not cell.startswith(" [markdown]"))
    return code.split("\n", 1)[1]


def pip_installs(cell: str) -> list[list[str]]:
    """The arguments after ``pip install`` of each ``subprocess.run([...])`` in ``cell``, options kept."""
    installs = []
    for node in ast.walk(ast.parse(cell)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "run":
            words = [item.value for item in node.args[0].elts if isinstance(item, ast.Constant)]
            if words[:3] == ["-m", "pip", "install"]:
                installs.append(words[3:])
    return installs


def imported_modules(source: str, package: str) -> set[str]:
    """Dotted names of every module ``source`` imports, relative imports resolved against ``package``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # `from course_lib import zoo`
    return names


def course_module_file(module: str) -> Path | None:
    """The installed source file of ``course_lib.a.b`` (a module or a package's ``__init__``), else None."""
    path = COURSE_LIB.joinpath(*module.split(".")[1:])
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(chapter: Path) -> set[str]:
    """Dotted names of the non-stdlib modules that the chapter, and every course_lib module it reaches, import."""
    found, seen, todo = set(), set(), [(chapter, "")]
    while todo:
        path, package = todo.pop()
        for name in imported_modules(path.read_text(), package):
            top = name.split(".")[0]
            if top == "course_lib":
                parts = name.split(".")
                for module in (".".join(parts[:end]) for end in range(1, len(parts) + 1)):
                    file = course_module_file(module)
                    if file is not None and module not in seen:
                        seen.add(module)
                        todo.append((file, module if file.name == "__init__.py" else module.rpartition(".")[0]))
            elif top not in sys.stdlib_module_names:
                found.add(name)
    return found


def installed_by_first_cell(chapter: Path) -> tuple[dict[str, set[str]], list[Requirement]]:
    """What the chapter's first cell installs: {distribution: extras} with dependencies, and the
    requirements it installs with ``--no-deps``."""
    with_dependencies, without = {}, []
    for words in pip_installs(first_code_cell(chapter)):
        for word in (w for w in words if not w.startswith("-")):
            requirement = Requirement("course_lib @ " + word if word == COURSE_URL else word)
            if "--no-deps" in words:
                without.append(requirement)
            else:
                with_dependencies[requirement.name] = set(requirement.extras)
    return with_dependencies, without


def with_requirements(distributions: dict[str, set[str]]) -> set[str]:
    """Canonical names of ``{distribution: extras}`` and of all they require, by the installed metadata
    (markers evaluated; a distribution not installed here counts, its own requirements unknown)."""
    names, seen, todo = set(), set(), [(name, frozenset(extras)) for name, extras in distributions.items()]
    while todo:
        name, extras = todo.pop()
        if (canonical(name), extras) in seen:
            continue
        seen.add((canonical(name), extras))
        names.add(canonical(name))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": extra}) for extra in extras or {""}):
                todo.append((requirement.name, frozenset(requirement.extras)))
    return names


def colab_preinstalled() -> dict[str, set[str]]:
    """What a Colab runtime has before the first cell: the floor set and the Jupyter kernel."""
    lines = (line.split("#")[0].strip() for line in (ROOT / "requirements-floor.txt").read_text().splitlines())
    return {Requirement(line).name: set() for line in lines if line} | {"ipykernel": set()}


@functools.cache
def installed_top_level_modules() -> dict[str, list[str]]:
    """Top-level module -> the installed distributions that provide it (scanning them all is slow: once)."""
    return metadata.packages_distributions()


def distributions_of(module: str) -> list[str]:
    """Canonical names of the installed distributions that provide ``module`` (its own name if none is installed)."""
    if module in SUBMODULE_NEEDS:
        return [SUBMODULE_NEEDS[module]]
    top = module.split(".")[0]
    return [canonical(name) for name in installed_top_level_modules().get(top, [top])]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_first_cell_installs_the_course_on_colab_only(chapter):
    cell = first_code_cell(chapter)
    assert 'if "google.colab" in sys.modules:' in cell, f"{chapter.name}: the install must be a no-op outside Colab"
    with_dependencies, _ = installed_by_first_cell(chapter)
    assert "course_lib" in with_dependencies, f"{chapter.name}: the first cell must pip-install the course from {COURSE_URL}"


def test_the_walk_reaches_imports_inside_course_lib():
    """trackeval is imported only in course_lib.evaluation.mots, and tensorboard only through torch."""
    assert "trackeval" in third_party_imports(ROOT / "book/week3/03_tracking.py")
    assert "torch.utils.tensorboard" in third_party_imports(ROOT / "book/week2/03_training.py")
    assert not any(name.split(".")[0] == "trackeval" for name in third_party_imports(ROOT / "book/week1/02_anchors.py"))


@pytest.mark.skipif(COURSE_LIB.parent == ROOT, reason="course_lib is this checkout (editable or on PYTHONPATH), "
                    "not installed as on Colab: `make test-floor` runs this")
@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_what_a_chapter_imports_its_first_cell_installs(chapter):
    with_dependencies, without = installed_by_first_cell(chapter)
    provided = with_requirements(colab_preinstalled() | with_dependencies) | {canonical(r.name) for r in without}
    missing = {module: distributions_of(module) for module in sorted(third_party_imports(chapter))
               if not set(distributions_of(module)) & provided}
    assert not missing, f"{chapter.name} imports modules its first cell does not install: {missing}"
    for requirement in without:
        installed = metadata.version(requirement.name)
        assert requirement.specifier.contains(installed), \
            f"{chapter.name} installs {requirement}, this environment has {installed}: the Makefile and the cell disagree"
