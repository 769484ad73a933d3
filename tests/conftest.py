"""Shared fixtures: the book built once per test session (executing only the chapters with an explorable)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BuiltSite:
    """A Jupyter Book build of the repository: its HTML folder, the build's exit code and its log."""

    html: Path
    returncode: int
    log: str


def explorable_chapters() -> list[Path]:
    """The chapters (paths without suffix) that show a :mod:`course_lib.viz.widgets` explorable."""
    return sorted(path.with_suffix("") for path in (ROOT / "book").rglob("*.py")
                  if re.search(r"^widgets\.\w+\(", path.read_text(), flags=re.M))


def build_site(out: Path) -> BuiltSite:
    """Build the book from the repository's own config into ``out``, executing only the chapters
    with an explorable (the browser test moves their controls; nbval executes every chapter).

    The config is copied into ``out`` with every other notebook excluded from execution; the paths
    in it that Jupyter Book resolves against the config file's folder are made absolute so they
    still point into the repository.
    """
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "force"
    config["execute"]["exclude_patterns"] = [str(path.relative_to(ROOT)) for path in (ROOT / "book").rglob("*.ipynb")
                                             if path.with_suffix("") not in explorable_chapters()]
    config["sphinx"]["local_extensions"] = {
        name: str(ROOT / path) for name, path in config["sphinx"]["local_extensions"].items()
    }
    config["bibtex_bibfiles"] = [str(ROOT / path) for path in config["bibtex_bibfiles"]]
    (out / "_config.yml").write_text(yaml.safe_dump(config))
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", "-W", "-n", "--keep-going", str(ROOT),
         "--config", str(out / "_config.yml"), "--path-output", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    return BuiltSite(out / "_build" / "html", result.returncode, result.stdout + result.stderr)


@pytest.fixture(scope="session")
def built_site(tmp_path_factory) -> BuiltSite:
    return build_site(tmp_path_factory.mktemp("book"))


@pytest.fixture(scope="session")
def data_script():
    """``data_script("download_coco")``: that script of ``data_scripts/`` as a module, freshly loaded."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "data_scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="session")
def data_script_main(data_script):
    """``data_script_main("make_toycity")``: the ``main`` function of that script in ``data_scripts/``."""
    return lambda name: data_script(name).main


@pytest.fixture(scope="module")
def untrained_toycity_model():
    """A randomly initialised (seed 0) ``toycity_small`` in eval mode, one per test module:
    it tests plumbing (timers, variants, CLIs), never the quality of detections."""
    import torch

    from course_lib.modeling.maskrcnn import build

    torch.manual_seed(0)
    return build("toycity_small").eval()


@pytest.fixture
def tiny_training_batch():
    """Two random 64x128 images, each with one car (label 3) whose mask fills its box: a training step's input."""
    import torch

    images = [torch.rand(3, 64, 128) for _ in range(2)]
    masks = torch.zeros(1, 64, 128, dtype=torch.uint8)
    masks[0, 10:40, 20:60] = 1
    targets = [{"boxes": torch.tensor([[20.0, 10.0, 60.0, 40.0]]), "labels": torch.tensor([3]), "masks": masks.clone()}
               for _ in range(2)]
    return images, targets


# --- Colab mode: stand-ins for COCO weights, Cityscapes and COCO data (tests/standins.py) --------

@pytest.fixture(scope="session")
def coco_torch_home(tmp_path_factory) -> Path:
    """A torch hub cache (``TORCH_HOME``) holding the COCO-format stand-in under torchvision's file name."""
    from standins import install_coco_weights

    home = tmp_path_factory.mktemp("torch_home")
    install_coco_weights(home)
    return home


@pytest.fixture
def coco_weights(coco_torch_home, monkeypatch) -> Path:
    """COCO mode for one test: ``TORCH_HOME`` at the stand-in cache, its sha256 prefix trusted. Returns the file."""
    from standins import trust_coco_file

    from course_lib.zoo import registry

    monkeypatch.setenv("TORCH_HOME", str(coco_torch_home))
    monkeypatch.delenv("COURSE_OFFLINE", raising=False)
    path = registry._coco_file()
    trust_coco_file(monkeypatch, path)
    return path


@pytest.fixture(scope="session")
def cityscapes_standin(tmp_path_factory) -> Path:
    """ToyCity in the Cityscapes layout (train and val), with group regions and a caravan."""
    from standins import export_cityscapes

    return export_cityscapes(tmp_path_factory.mktemp("cityscapes"))


@pytest.fixture(scope="session")
def coco_data_standin(tmp_path_factory) -> Path:
    """ToyCity as COCO val2017 and train2017, in the folder layout of data_scripts/download_coco.py."""
    from standins import export_coco

    root = tmp_path_factory.mktemp("coco")
    for split in ("train2017", "val2017"):
        export_coco(root, split)
    return root
