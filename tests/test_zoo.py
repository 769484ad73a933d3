"""course_lib.zoo.registry: the weight download path, tested against a loopback HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from course_lib import zoo
from course_lib.utils.download import file_digest
from course_lib.zoo import files, registry


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1 for the duration of a test."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}")
    httpd.shutdown()
    httpd.server_close()


def closed_port_url(name: str) -> str:
    with socket.socket() as s:  # bind then close: nothing listens on this port afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def test_fetch_downloads_verifies_and_caches(server, torch_home):
    payload = b"weights" * 1000
    (server.root / "model-abc.pth").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()

    path = files.fetch(f"{server.url}/model-abc.pth", digest, progress=False)

    assert path.read_bytes() == payload
    assert path.parent == files.weights_dir()
    (server.root / "model-abc.pth").unlink()  # the second call must not need the server
    assert files.fetch(f"{server.url}/model-abc.pth", digest[:8], progress=False) == path


def test_fetch_rejects_a_corrupt_download_and_leaves_nothing(server, torch_home):
    (server.root / "model.pth").write_bytes(b"corrupted bytes")
    expected = hashlib.sha256(b"the real weights").hexdigest()

    with pytest.raises(registry.WeightsUnavailable, match="sha256 does not match"):
        files.fetch(f"{server.url}/model.pth", expected, progress=False)

    assert not any(files.weights_dir().iterdir()), "a corrupt download must not stay in the cache"


def test_fetch_without_server_gives_one_clear_line(torch_home):
    with pytest.raises(registry.WeightsUnavailable) as error:
        files.fetch(closed_port_url("model.pth"), "0" * 64, progress=False)

    message = str(error.value)
    assert "\n" not in message and "cannot download" in message and "copy the file" in message
    assert error.value.__cause__ is None and error.value.__suppress_context__, "no chained traceback soup"


def test_load_coco_offline_says_what_to_do(torch_home, monkeypatch):
    offline = SimpleNamespace(url=closed_port_url("maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth"),
                              meta=registry.COCO_WEIGHTS.meta)
    monkeypatch.setattr(registry, "COCO_WEIGHTS", offline)

    assert zoo.status("coco") == "unavailable" and not zoo.available("coco")
    with pytest.raises(registry.WeightsUnavailable, match="zoo.load\\('toycity'\\)"):
        zoo.load("coco")


def test_status_reports_cached_coco_weights(torch_home):
    files.weights_dir().mkdir(parents=True)
    Path(registry._coco_file()).write_bytes(b"x")
    assert zoo.status("coco") == "cached"


def test_cached_file_with_wrong_hash_is_reported(torch_home):
    files.weights_dir().mkdir(parents=True)
    (files.weights_dir() / "m.pth").write_bytes(b"tampered")
    with pytest.raises(registry.WeightsUnavailable, match="delete it"):
        files.fetch("http://127.0.0.1:9/m.pth", "0" * 64)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="choose one of"):
        zoo.load("yolo")


def test_user_checkpoint_from_path_round_trips(tmp_path):
    from course_lib.modeling import maskrcnn as model_lib

    torch.manual_seed(0)
    original = model_lib.build("toycity_small")
    path = tmp_path / "mine.pt"
    torch.save({"model": original.state_dict()}, path)
    digest = file_digest(path)

    loaded = zoo.load("checkpoint", source=str(path), sha256=digest, arch="toycity_small", device="cpu")

    for (name, a), b in zip(original.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(registry.WeightsUnavailable, match="corrupt"):
        zoo.load("checkpoint", source=str(path), sha256="f" * 64, arch="toycity_small")
    with pytest.raises(registry.WeightsUnavailable, match="no checkpoint file"):
        zoo.load("checkpoint", source=str(tmp_path / "missing.pt"), sha256=digest)


def test_toycity_model_ships_and_loads():
    manifest = registry.toycity_manifest()
    assert zoo.status("toycity") == "shipped"
    model = zoo.load("toycity", device="cpu")
    assert not model.training
    size_mb = (Path(registry.__file__).parents[1] / "assets" / manifest["file"]).stat().st_size / 2**20
    assert size_mb <= 25, f"the shipped checkpoint is {size_mb:.1f} MB; the limit is 25 MB"


def test_command_line_model_names(tmp_path, capsys):
    from course_lib.cli import main

    assert not zoo.from_command_line("toycity", device="cpu").training
    missing = tmp_path / "missing.pt"
    assert main(["eval", "--data", "toycity", "--model", str(missing), "--length", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --model") and "\n" not in error


def test_coco_weights_keep_coco_meaning_zero_shot(coco_weights):
    """The stand-in's classifier says "person" for every proposal (COCO probability ~1): read in the
    course's classes, those are confident persons, never riders, with COCO's own score."""
    from course_lib.classes import CLASSES

    model = zoo.load("coco", urban=True, device="cpu", min_size=128, max_size=256)
    with torch.no_grad():
        out = model([torch.rand(3, 128, 256)])[0]
    confident = out["scores"] >= 0.5
    assert confident.any(), "a pedestrian COCO is sure of must survive a 0.5 threshold"
    assert {CLASSES[int(i)] for i in out["labels"]} == {"person"}, "rider is not a COCO class: never predicted"
    assert torch.allclose(out["scores"], torch.ones_like(out["scores"]), atol=1e-6)
    assert out["masks"].shape[1:] == (1, 128, 256)


def test_urban_log_probs_are_coco_probabilities():
    from course_lib.classes import CLASSES
    from course_lib.modeling import coco_heads as models

    torch.manual_seed(0)
    coco_logits = torch.randn(5, models.COCO_NUM_SLOTS)
    coco_p = coco_logits.softmax(-1)
    urban_p = models.urban_log_probs(coco_logits).softmax(-1)
    rows = models.coco_rows()
    assert torch.allclose(urban_p.sum(-1), torch.ones(5))
    for k, name in enumerate(CLASSES):
        if name == "rider":
            assert torch.equal(urban_p[:, k], torch.zeros(5))
        elif name != "__background__":
            assert torch.allclose(urban_p[:, k], coco_p[:, rows[k]], atol=1e-6)
    others = [s for s in range(models.COCO_NUM_SLOTS) if s not in set(rows[1:])]
    assert torch.allclose(urban_p[:, 0], coco_p[:, others].sum(-1), atol=1e-6)
