"""course_lib.zoo.detectron2_weights: Detectron2 model-zoo files converted to torchvision, on stand-in files.

The stand-in ``.pkl`` has exactly Detectron2's names and shapes (checked against Detectron2's own
model in ``data_scripts/detectron2_equality.py``) and random values; it is placed where the real
download would be cached, so ``zoo.load("detectron2:...")`` runs its real path without internet.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import http.server
import importlib
import importlib.util
import json
import pickle
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import zoo
from course_lib.cli import main as cli_main
from course_lib.errors import BadInput
from course_lib.modeling import detectron2_arch
from course_lib.zoo import detectron2_weights as d2z
from course_lib.zoo import files, registry

CITYSCAPES = "Cityscapes/mask_rcnn_R_50_FPN"
COCO_3X = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x"


@pytest.fixture(scope="module")
def cityscapes_weights() -> dict[str, np.ndarray]:
    return d2z.random_weights(50, 8, seed=0)


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    files.weights_dir().mkdir(parents=True)
    return tmp_path / "torch_home"


def cache(weights: dict[str, np.ndarray], name: str) -> Path:
    """Put ``weights`` where ``zoo.load("detectron2:" + name)`` looks for its download."""
    return d2z.save_weights(weights, files.weights_dir() / d2z.entry(name).cache_name)


def test_every_tensor_lands_and_none_is_left_over(torch_home, cityscapes_weights):
    cache(cityscapes_weights, CITYSCAPES)
    model = zoo.load(f"detectron2:{CITYSCAPES}", device="cpu")
    state = model.state_dict()

    landed = {d2z.torchvision_name(k): k for k in cityscapes_weights}
    assert len(landed) == len(cityscapes_weights) == 307  # one-to-one
    assert set(landed) == set(state), "a model tensor without a source, or a source tensor without a place"
    for tv_name, d2_name in landed.items():
        assert torch.equal(state[tv_name], d2z.torchvision_value(d2_name, cityscapes_weights[d2_name])), tv_name

    # the conventions, value by value
    stem = torch.as_tensor(cityscapes_weights["backbone.bottom_up.stem.conv1.weight"])
    assert torch.equal(state["backbone.body.conv1.weight"][:, 0], stem[:, 2])  # R <- BGR's third channel
    cls = torch.as_tensor(cityscapes_weights["roi_heads.box_predictor.cls_score.weight"])
    assert torch.equal(state["roi_heads.box_predictor.cls_score.weight"][0], cls[-1])  # background first
    assert torch.equal(state["roi_heads.box_predictor.cls_score.weight"][1:], cls[:-1])
    assert not state["roi_heads.box_predictor.bbox_pred.weight"][:4].any()
    assert not state["roi_heads.mask_predictor.mask_fcn_logits.weight"][0].any()
    assert model.backbone.body.layer2[0].conv1.stride == (2, 2) and model.backbone.body.layer2[0].conv2.stride == (1, 1)
    for pooler in (model.roi_heads.box_roi_pool, model.roi_heads.mask_roi_pool):
        assert isinstance(pooler, detectron2_arch.AlignedMultiScaleRoIAlign) and pooler.sampling_ratio == 0
    assert (model.transform.min_size, model.transform.max_size) == ((1024,), 2048)
    assert model.transform.image_mean == pytest.approx([123.675 / 255, 116.28 / 255, 103.53 / 255])
    assert model.roi_heads.box_coder.weights == (10.0, 10.0, 5.0, 5.0)
    assert isinstance(model.rpn, detectron2_arch.Detectron2RPN) and isinstance(model.transform, detectron2_arch.Detectron2Transform)
    assert d2z.class_names(CITYSCAPES)[1:] == ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")


def test_coco_entry_downloads_has_80_contiguous_classes_and_runs(torch_home, tmp_path, monkeypatch):
    # the real download path (course_lib.utils.download) from a loopback stand-in of the zoo's server
    server = tmp_path / "dl.fbaipublicfiles.com" / "detectron2"
    remote = server / COCO_3X / d2z.entry(COCO_3X).file
    remote.parent.mkdir(parents=True)
    d2z.save_weights(d2z.random_weights(50, 80, seed=1), remote)
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *args: None})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(server)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setattr(d2z, "URL_PREFIX", f"http://127.0.0.1:{httpd.server_port}/")
    try:
        model = zoo.load(f"detectron2:{COCO_3X}", device="cpu", min_size=96, max_size=128, progress=False)  # small: fast
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (files.weights_dir() / d2z.entry(COCO_3X).cache_name).read_bytes() == remote.read_bytes()
    assert d2z.status(COCO_3X) == "cached"
    names = d2z.class_names(COCO_3X)
    assert len(names) == 81 and names[1] == "person" and names[-1] == "toothbrush" and "N/A" not in names
    assert model.roi_heads.box_predictor.cls_score.out_features == 81
    with torch.inference_mode():
        out = model([torch.rand(3, 96, 128)])[0]
    assert out["masks"].shape[1:] == (1, 96, 128) and out["labels"].max() <= 80


def refusal(path: Path, depth: int = 50, num_classes: int = 8) -> str:
    with pytest.raises(registry.WeightsUnavailable) as error:
        d2z.read_weights(path, depth, num_classes)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and "delete it" in message
    return message


def test_wrong_structure_is_refused_with_one_line(tmp_path, cityscapes_weights):
    path = d2z.save_weights(cityscapes_weights, tmp_path / "cityscapes.pkl")
    assert "wrongly shaped" in refusal(path, num_classes=80)  # a Cityscapes file read as COCO
    assert "lacks" in refusal(path, depth=101)  # an R50 file read as R101

    extra = d2z.save_weights({**cityscapes_weights, "roi_heads.keypoint_head.x": np.zeros(1, np.float32)}, tmp_path / "x.pkl")
    assert "unused" in refusal(extra)
    numbered = d2z.save_weights({**cityscapes_weights, 7: np.zeros(1, np.float32)}, tmp_path / "numbered.pkl")
    assert "unused" in refusal(numbered)  # a name that is not a string: refused like any other stray name

    caffe2 = tmp_path / "caffe2.pkl"  # Detectron1/Caffe2 files are a bare dict of blobs
    caffe2.write_bytes(pickle.dumps({"blobs": {"conv1_w": np.zeros((64, 3, 7, 7), np.float32)}}))
    assert "expected a pickled" in refusal(caffe2)

    class RunsCode:
        def __reduce__(self):
            return (print, ("a weights file must not run code",))

    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps({"model": RunsCode(), "__author__": "x"}))
    assert "builtins.print" in refusal(hostile)


def test_missing_batchnorm_statistics_are_filled_as_detectron2_does(tmp_path, cityscapes_weights):
    without = {k: v for k, v in cityscapes_weights.items() if not k.endswith(d2z.BN_STATS)}
    weights = d2z.read_weights(d2z.save_weights(without, tmp_path / "no_stats.pkl"), 50, 8)
    assert not weights["backbone.bottom_up.res2.0.conv1.norm.running_mean"].any()
    assert (weights["backbone.bottom_up.res2.0.conv1.norm.running_var"] == 1).all()


def test_unknown_entry_names_the_choices():
    with pytest.raises(BadInput, match="Cityscapes/mask_rcnn_R_50_FPN"):
        zoo.load("detectron2:COCO-InstanceSegmentation/no_such_model")


def test_anchors_follow_detectron2_unrounded_with_fixed_strides():
    generator = detectron2_arch.Detectron2Anchors()
    cell = generator.cell_anchors[0]  # size 32, ratios 0.5, 1, 2
    assert cell[0].tolist() == pytest.approx([-22.627417, -11.313708, 22.627417, 11.313708])  # torchvision: 23, 11
    images = torch.zeros(1, 3, 1056, 1088)  # padded to 32, not to 64: P6 is 17 x 17
    maps = [torch.zeros(1, 1, -(-1056 // s), -(-1088 // s)) for s in detectron2_arch.FEATURE_STRIDES]
    from torchvision.models.detection.image_list import ImageList

    anchors = generator(ImageList(images, [(1056, 1088)]), maps)[0]
    p6 = anchors[-17 * 17 * 3:]
    assert p6[3, 0] - p6[0, 0] == 64  # next location, stride 64 (torchvision would infer 1056 // 17 = 62)


def test_masks_are_pasted_at_pixel_centres():
    ones = torch.ones(1, 1, 28, 28)
    pasted = detectron2_arch.paste_masks(ones, torch.tensor([[10.0, 10.0, 20.0, 30.0]]), (40, 40))[0, 0] >= 0.5
    rows, cols = torch.where(pasted)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 29, 10, 19)




def test_module_prefixed_names_are_read_as_detectron2_reads_them(tmp_path, cityscapes_weights):
    """A model saved inside DistributedDataParallel: every name starts with ``module.`` (fvcore strips it, all or none)."""
    prefixed = {f"module.{k}": v for k, v in cityscapes_weights.items()}
    read = d2z.read_weights(d2z.save_weights(prefixed, tmp_path / "ddp.pkl"), 50, 8)
    assert read.keys() == cityscapes_weights.keys()
    assert all(np.array_equal(read[k], cityscapes_weights[k]) for k in read)

    half = {(f"module.{k}" if i % 2 else k): v for i, (k, v) in enumerate(cityscapes_weights.items())}
    assert "lacks" in refusal(d2z.save_weights(half, tmp_path / "half.pkl"))


def test_torch_save_file_renamed_pkl_is_refused_with_one_line(tmp_path, cityscapes_weights):
    path = tmp_path / "model_final.pkl"
    torch.save({"model": {k: torch.from_numpy(v) for k, v in list(cityscapes_weights.items())[:3]}}, path)
    assert "torch.save" in refusal(path)


def test_cut_files_and_bad_encodings_are_refused_with_one_line(tmp_path):
    """Every truncation of a small zoo-format pickle (a cut download), and bytes stored with an unknown codec."""
    path = tmp_path / "cut.pkl"
    for protocol in (2, 4):  # Python 2 era files store bytes through _codecs.encode
        good = pickle.dumps({"model": {"backbone.bottom_up.stem.conv1.weight": np.zeros((2, 3), np.float32)},
                             "__author__": "x"}, protocol=protocol)
        for end in range(len(good)):
            path.write_bytes(good[:end])
            refusal(path)

    class UnknownCodec:
        def __reduce__(self):
            return (codecs.encode, ("abc", "lati21"))

    path.write_bytes(pickle.dumps({"model": {"x": UnknownCodec()}, "__author__": "x"}, protocol=2))
    assert "lati21" in refusal(path)


@pytest.fixture
def small_cityscapes(torch_home, monkeypatch, cityscapes_weights):
    """The Cityscapes entry with a 64-pixel test size (fast), its random-weight stand-in in the cache."""
    monkeypatch.setitem(d2z.ENTRIES, CITYSCAPES, dataclasses.replace(d2z.ENTRIES[CITYSCAPES], min_size=64, max_size=128))
    cache(cityscapes_weights, CITYSCAPES)
    return CITYSCAPES


@pytest.mark.parametrize("resize", sorted(detectron2_arch.RESIZE_MODES))
def test_zoo_model_on_an_odd_image_answers_in_its_coordinates(small_cityscapes, resize):
    model = zoo.load(f"detectron2:{small_cityscapes}", device="cpu", resize=resize)
    assert model.transform.resize_mode == resize
    image = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (3, 37, 61))).float() / 255
    with torch.inference_mode():
        out = model([image])[0]
    assert len(out["boxes"]) > 0  # random weights detect plenty
    assert out["masks"].shape[1:] == (1, 37, 61)
    assert (out["boxes"][:, 0::2] <= 61).all() and (out["boxes"][:, 1::2] <= 37).all() and (out["boxes"] >= 0).all()
    assert ((out["boxes"][:, 2:] - out["boxes"][:, :2]) > 0).all()


def test_status_knows_detectron2_names(torch_home, cityscapes_weights, monkeypatch):
    monkeypatch.setattr(files, "reachable", lambda url: False)  # offline
    assert zoo.status(f"detectron2:{CITYSCAPES}") == "unavailable" and not zoo.available(f"detectron2:{CITYSCAPES}")
    cache(cityscapes_weights, CITYSCAPES)
    assert zoo.status(f"detectron2:{CITYSCAPES}") == "cached" and zoo.available(f"detectron2:{CITYSCAPES}")
    with pytest.raises(BadInput, match="choose one of"):
        zoo.status("detectron2:Cityscapes/no_such_model")


def test_command_line_takes_detectron2_names_in_the_course_classes(small_cityscapes, capsys):
    model = zoo.from_command_line(f"detectron2:{small_cityscapes}", device="cpu")
    assert isinstance(model.transform, detectron2_arch.Detectron2Transform) and not model.training
    assert cli_main(["eval", "--data", "toycity", "--length", "1", "--height", "64", "--width", "128",
                     "--model", f"detectron2:{small_cityscapes}"]) == 0
    assert "mask" in capsys.readouterr().out.lower()

    assert cli_main(["eval", "--data", "toycity", "--length", "1", "--model", f"detectron2:{COCO_3X}"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"detectron2:{CITYSCAPES}" in error and "80 COCO classes" in error


def test_equality_result_names_functions_that_exist():
    result = json.loads((Path(d2z.__file__).parents[1] / "assets" / "results" / "detectron2_equality.json").read_text())
    named = re.findall(r"course_lib(?:\.\w+)+", result["weights"] + " " + result["state_dict"])
    assert named, "the result should say which function made its weights and which one it checked the names with"
    for dotted in named:
        module, _, attribute = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), dotted


@pytest.mark.skipif(importlib.util.find_spec("detectron2") is None,
                    reason="detectron2 is not importable (no PyPI release): put a source checkout and its "
                           "requirements on PYTHONPATH to compare against it")
def test_outputs_equal_detectron2s_own(tmp_path, data_script_main):
    import cv2

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (333, 500, 3), dtype=np.uint8), (0, 0), 3)  # odd, resized up
    image_path = tmp_path / "blobs.png"
    cv2.imwrite(str(image_path), cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX))
    out = tmp_path / "equality.json"
    data_script_main("detectron2_equality")(["--images", str(image_path), f"{image_path}@1111x1283", "--out", str(out)])

    result = json.loads(out.read_text())
    assert [row["resized_hw"] for row in result["comparisons"]["pil"]["images"]] == [[1024, 1538], [1024, 1183]]
    assert result["comparisons"]["pil"]["images"][0]["detections_detectron2"] > 10
    assert result["output_size"]["equal"] == result["output_size"]["sizes_checked"]
    assert result["within_tolerance"], {name: c.get("within_tolerance") for name, c in result["comparisons"].items()}
