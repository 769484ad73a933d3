"""course_lib.environment: fast mode, device choice, seeding, banner, Cityscapes detection, and that
no other module reads an environment variable."""

import ast
from pathlib import Path

import pytest
import torch

from course_lib import environment


def test_fast_mode_and_pick(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert environment.fast_mode() and environment.pick(2, 2000) == 2
    monkeypatch.setenv("COURSE_FAST", "0")
    assert not environment.fast_mode() and environment.pick(2, 2000) == 2000


def test_device_override_and_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert environment.device() == torch.device("cpu")
    if not torch.cuda.is_available():
        monkeypatch.setenv("COURSE_DEVICE", "cuda")
        with pytest.raises(RuntimeError, match="Unset COURSE_DEVICE"):
            environment.device()


def test_seed_everything_repeats_random_draws():
    environment.seed_everything(7)
    first = torch.rand(3)
    environment.seed_everything(7)
    assert torch.equal(first, torch.rand(3))


def test_banner_names_model_data_and_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    line = environment.banner("ToyCity model", "ToyCity val")
    assert "ToyCity model" in line and "ToyCity val" in line and "fast mode" in line


def test_cityscapes_root_requires_both_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    assert environment.cityscapes_root() is None
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path))
    (tmp_path / "leftImg8bit").mkdir()
    assert environment.cityscapes_root() is None, "a half-downloaded folder is not a dataset"
    (tmp_path / "gtFine").mkdir()
    assert environment.cityscapes_root() == tmp_path


def test_banner_of_a_committed_result_names_the_recorded_machine(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    record = {"cpu": "cpu: Recorded CPU (64 logical cores)", "threads": 7, "date": "2026-01-02T03:04:05+00:00"}
    line = environment.banner("ToyCity model", "ToyCity held-out", recorded=record, source="toycity_training.json")
    assert "device: cpu: Recorded CPU (64 logical cores), 7 threads" in line
    assert "2026-01-02T03:04:05+00:00" in line and "toycity_training.json" in line
    assert "fast mode" not in line and "full mode" not in line, "the file's numbers do not depend on this run's mode"
    assert line.count("device:") == 1


ENVIRONMENT_READS = {("os", "environ"), ("os", "environb"), ("os", "getenv"), ("os", "getenvb"), ("os", "putenv"), ("os", "unsetenv")}

#: Modules that another change will move onto :mod:`course_lib.environment`; each must still read a
#: variable (the test below fails once it stops, so the entry cannot outlive its reason).
PENDING: dict[str, str] = {}  # module -> what it must change to read its variable through course_lib.environment


def environment_reads(path) -> list[str]:
    """``os.environ`` / ``os.getenv`` / ``os.putenv`` ... in a module's syntax tree: any use, any import of them."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (node.value.id, node.attr) in ENVIRONMENT_READS:
            found.append(f"{path}:{node.lineno} os.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            found += [f"{path}:{node.lineno} from os import {a.name}" for a in node.names if ("os", a.name) in ENVIRONMENT_READS]
        elif isinstance(node, ast.Name) and node.id in {"getenv", "environ"}:  # e.g. a re-export of os's
            found.append(f"{path}:{node.lineno} {node.id}")
    return found


def test_only_the_environment_module_reads_environment_variables():
    root = Path(__file__).resolve().parents[1]
    readers = {str(p.relative_to(root)): environment_reads(p) for p in sorted((root / "course_lib").rglob("*.py"))}
    assert readers["course_lib/environment.py"], "the scan finds nothing: it would pass any module"
    others = {name: lines for name, lines in readers.items() if lines and name != "course_lib/environment.py"}
    assert set(others) <= set(PENDING), f"read environment variables through course_lib.environment: {others}"
    assert set(PENDING) <= set(others), f"no longer reads a variable: remove it from PENDING: {set(PENDING) - set(others)}"


def test_environment_reads_finds_every_spelling(tmp_path):
    module = tmp_path / "m.py"
    for source in ("import os\nos.environ['X']", "import os\nos.getenv('X')", "import os\nos.putenv('X', '1')",
                   "from os import environ", "from os import getenv as g", "import os\n{**os.environ}"):
        module.write_text(source)
        assert environment_reads(module), source
    module.write_text("import os\nos.path.join('a', 'b')\nenvironment = 1")
    assert environment_reads(module) == []


def test_offline_and_the_cityscapes_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_OFFLINE", "1")
    assert environment.offline()
    monkeypatch.setenv("COURSE_OFFLINE", "0")
    assert not environment.offline()
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    assert environment.cityscapes_folder() is None
    monkeypatch.setenv("CITYSCAPES_DATASET", "~/nowhere")
    assert environment.cityscapes_folder() == Path("~/nowhere").expanduser() and environment.cityscapes_root() is None


@pytest.mark.skipif(Path(environment.__file__).resolve().parents[1] != Path(__file__).resolve().parents[1],
                    reason="course_lib is installed, not this checkout (`make test-floor`): it has no .cache/ of its own")
def test_sample_video_candidates_put_the_variable_first_and_follow_make_vtest(monkeypatch, tmp_path):
    root = Path(__file__).resolve().parents[1]
    vtest_dir = next(line.split(":=")[1].strip() for line in (root / "Makefile").read_text().splitlines()
                     if line.startswith("VTEST_DIR"))
    monkeypatch.delenv("COURSE_SAMPLE_VIDEO", raising=False)
    defaults = environment.sample_video_candidates()
    assert defaults[0] == root / vtest_dir / environment.SAMPLE_VIDEO and len(defaults) == 2
    monkeypatch.setenv("COURSE_SAMPLE_VIDEO", str(tmp_path / "mine.avi"))
    assert environment.sample_video_candidates() == [tmp_path / "mine.avi", *defaults]
