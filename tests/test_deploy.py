"""course_lib.deploy: ONNX / OpenVINO export round trips, INT8 on a tiny calibration set, variant names, the export CLI."""

from __future__ import annotations

import json

import pytest
import torch

from course_lib import zoo
from course_lib.cli import main
from course_lib.data.toycity import ToyCityDataset
from course_lib.deploy import benchmark, eager, export, variants
from course_lib.deploy.predictor import onnxruntime_predictor, openvino_predictor
from course_lib.deploy.quantize import quantize_int8
from course_lib.results import load_results


@pytest.fixture(scope="module")
def model():
    return zoo.load("toycity", device="cpu").eval()


@pytest.fixture(scope="module")
def images():
    # two held-out scenes with different numbers of detections: a trace that froze the count would fail one
    return [image for image, _ in benchmark.toycity_val(2)]


@pytest.fixture(scope="module")
def onnx_file(model, tmp_path_factory):
    return export.export_onnx(model, tmp_path_factory.mktemp("export") / "toycity.onnx", 128, 256)


def test_onnx_and_openvino_reproduce_the_eager_model(model, images, onnx_file):
    with torch.inference_mode():
        eager = [model([image])[0] for image in images]
    assert len(eager[0]["boxes"]) != len(eager[1]["boxes"])
    for predictor in (onnxruntime_predictor(onnx_file), openvino_predictor(export.to_openvino(onnx_file))):
        outputs = predictor(images)
        for reference, output in zip(eager, outputs):
            assert torch.equal(output["labels"], reference["labels"])
            torch.testing.assert_close(output["boxes"], reference["boxes"], atol=1e-3, rtol=0)
            torch.testing.assert_close(output["scores"], reference["scores"], atol=1e-4, rtol=0)
            assert output["masks"].shape == reference["masks"].shape  # pasted at full size, as the eager model does
            assert ((output["masks"] > 0.5) != (reference["masks"] > 0.5)).float().mean() < 1e-4
    assert export.onnx_metadata(onnx_file)["paste"] == "course_lib"


def test_a_wrong_image_size_says_to_export_again(onnx_file):
    with pytest.raises(ValueError, match="export again"):
        onnxruntime_predictor(onnx_file)([torch.rand(3, 64, 128)])


def test_int8_on_two_calibration_scenes_quantizes_only_the_chosen_layers(onnx_file, images, tmp_path):
    calibration = [ToyCityDataset(2, seed=0, height=128, width=256)[i][0] for i in range(2)]
    quantized = quantize_int8(export.to_openvino(onnx_file), calibration, "layers_but_predictors")
    consumers = [target.get_node() for op in quantized.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
                 for target in op.output(0).get_target_inputs()]
    # INT8 inputs for layers, none for the box arithmetic nor the last layer of any head
    assert {"Convolution", "MatMul"} <= {node.get_type_name() for node in consumers}
    assert not {node.get_type_name() for node in consumers} & {"Add", "Subtract", "Multiply", "Sqrt", "Gather", "ScatterElementsUpdate"}
    names = [node.get_friendly_name() for node in consumers]
    assert any("/backbone/body/" in name for name in names) and any("/roi_heads/mask_head/" in name for name in names)
    assert not any("mask_predictor" in name or "box_predictor" in name or "rpn/head/cls_logits" in name for name in names)
    path = export.save_openvino(quantized, tmp_path / "int8.xml")
    predictor = variants.load(path)
    assert predictor.metadata["int8_scope"] == "layers_but_predictors" and predictor.metadata["calibration_images"] == 2
    assert all(set(output) == {"boxes", "labels", "scores", "masks"} for output in predictor(images))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.bin", "int8.xml"]  # no partial files left


def test_variant_names_resolve():
    assert benchmark.is_deploy_name("ov_int8@fast") and not benchmark.is_deploy_name("fast")
    fast = variants.parse("ov_int8@fast#nncf_defaults")
    assert fast.settings == eager.get("fast") and fast.int8_scope == "nncf_defaults"
    assert all(variants.parse(name).name == name for name in variants.names())
    assert {"ort", "ov_fp32", "ov_int8", "ov_int8@fast", "ort@det_20"} <= set(variants.names())
    with pytest.raises(ValueError, match="combine a runtime with"):
        variants.parse("ov_fp32@fast_bf16")  # autocast is not a constant of the graph
    with pytest.raises(ValueError, match="goes with ov_int8"):
        variants.parse("ort#layers")


def test_bench_times_runtimes_interleaved_with_mask_ap(tmp_path, capsys):
    out = tmp_path / "deploy.json"
    assert main(["bench", "--variants", "ort,det_20", "--val", "2", "--warmup", "0", "--repeats", "2", "--force-loaded", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [row["name"] for row in results["variants"]] == ["baseline", "ort", "det_20"]
    ort_row = results["variants"][1]
    assert ort_row["mask_AP"] == pytest.approx(results["variants"][0]["mask_AP"], abs=1e-3)
    assert results["versions"]["onnxruntime"] and "before" in results["load_average_1min"]
    committed = load_results("deploy_cpu.json")  # the format the committed runtime benchmark has, every field of it
    assert set(committed) <= set(results) and all(set(committed["variants"][0]) <= set(row) for row in results["variants"])
    assert "| ort | ONNX Runtime" in capsys.readouterr().out


def test_export_cli_checks_agreement_and_never_leaves_a_partial_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "model.xml"
    assert main(["export", "--runtime", "ov_fp32@fast", "--check", "2", "--out", str(out)]) == 0
    assert "100.0% of confident detections reproduced" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]
    assert variants.load(out).metadata["settings"] == "fast"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    # a check that fails (--min-agreement is a share, at most 1): the files already there stay as they were
    monkeypatch.setattr(variants, "agreement_with_eager", lambda *args, **kwargs: {"detections": 0.5, "mask_iou": 0.5})
    assert main(["export", "--runtime", "ov_fp32", "--check", "1", "--out", str(out)]) == 1
    assert "nothing written" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert main(["export", "--runtime", "ov_fp32@bf16", "--out", str(out)]) == 2


def test_video_runs_on_a_runtime_and_on_an_exported_file(tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    assert main(["video", "--toycity", str(clip), "--frames", "3"]) == 0
    assert main(["video", str(clip), str(tmp_path / "ort.mp4"), "--runtime", "ort", "--variant", "fast", "--max-frames", "2"]) == 0
    assert "ort@fast: ONNX Runtime" in capsys.readouterr().out
    assert main(["video", str(clip), str(tmp_path / "x.mp4"), "--runtime", str(tmp_path / "missing.xml")]) == 2
    assert "no such exported model" in capsys.readouterr().err
    assert (tmp_path / "ort.mp4").stat().st_size > 0 and not (tmp_path / "x.mp4").exists()
