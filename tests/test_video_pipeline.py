"""course_lib.tracking.pipeline (threads, budget, one score threshold) and course_lib.deploy.cache (exports kept on disk)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from course_lib import deploy, zoo
from course_lib.cli import main
from course_lib.data.toycity import clip
from course_lib.errors import BadInput
from course_lib.tracking import pipeline, video_io


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [image for image, _ in clip(2, 6, 128, 256)]


@pytest.fixture
def small_model(monkeypatch, untrained_toycity_model):
    monkeypatch.setattr("course_lib.zoo.from_command_line", lambda *args, **kwargs: untrained_toycity_model)
    return untrained_toycity_model


def one_detection(score: float):
    """A Detect that finds one car of ``score`` in the middle of every frame, with its mask."""

    def detect(batch, clock):
        outputs = []
        for frame in batch:
            height, width = frame.shape[:2]
            masks = torch.zeros(1, 1, height, width)
            masks[..., height // 4: height // 2, width // 4: width // 2] = 1.0
            outputs.append({"boxes": torch.tensor([[width / 4, height / 4, width / 2, height / 2]]),
                            "labels": torch.tensor([2]), "scores": torch.tensor([score]), "masks": masks})
        return outputs

    return detect


# --------------------------------------------------------------------------- one score threshold


def test_min_score_below_the_trackers_default_keeps_a_detection_tracked(frames):
    results = [result for _, result, _ in pipeline.annotate(frames, one_detection(0.4), track=True, min_score=0.3)]
    assert [len(r["track_ids"]) for r in results] == [1] * len(frames)
    dropped = [result for _, result, _ in pipeline.annotate(frames, one_detection(0.4), track=True, min_score=0.45)]
    assert all(len(r["track_ids"]) == 0 for r in dropped)


def test_video_min_score_0_3_keeps_a_0_4_detection_tracked(tmp_path, small_model, monkeypatch, frames):
    clip_path = video_io.write_mp4(frames, tmp_path / "clip.mp4", 10)
    drawn = []
    monkeypatch.setattr(pipeline, "eager_detector", lambda model: one_detection(0.4))
    monkeypatch.setattr(pipeline, "draw_instances", lambda frame, result: drawn.append(result) or frame)
    assert main(["video", str(clip_path), str(tmp_path / "out.mp4"), "--track", "--min-score", "0.3"]) == 0
    assert [len(r["track_ids"]) for r in drawn] == [1] * len(frames)


def test_video_lowers_the_models_own_score_cut_to_min_score(tmp_path, small_model, monkeypatch, frames):
    clip_path = video_io.write_mp4(frames[:2], tmp_path / "clip.mp4", 10)
    seen = []
    real = pipeline.eager_detector

    def spy(model):
        detect = real(model)

        def wrapped(batch, clock):
            seen.append(model.roi_heads.score_thresh)
            return detect(batch, clock)

        return wrapped

    monkeypatch.setattr(pipeline, "eager_detector", spy)
    assert main(["video", str(clip_path), str(tmp_path / "out.mp4"), "--min-score", "0.01"]) == 0
    assert seen and set(seen) == {0.01} and small_model.roi_heads.score_thresh == 0.05  # restored afterwards


# --------------------------------------------------------------------------- drawing


@pytest.mark.parametrize("seed", range(6))
def test_blend_masks_draws_torchvisions_pixels_in_one_pass(seed):
    from torchvision.utils import draw_segmentation_masks

    from course_lib.viz.overlay import blend_masks

    generator = torch.Generator().manual_seed(seed)
    count, height, width = [1, 2, 5, 9, 1, 3][seed], 17 + seed, 31 - seed  # odd sizes, one mask, many
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    masks = torch.rand(count, height, width, generator=generator) > [0.5, 0.3, 0.7, 0.9, 1.0, 0.0][seed]  # none set, all set
    colors = [tuple(torch.randint(0, 256, (3,), generator=generator).tolist()) for _ in range(count)]
    for alpha in (0.0, 0.45, 0.5, 1.0):
        assert torch.equal(blend_masks(image, masks, colors, alpha), draw_segmentation_masks(image, masks, alpha, colors))


# --------------------------------------------------------------------------- the budget


@pytest.mark.parametrize("serial", [True, False])
def test_streaming_draws_on_the_encoders_thread_and_the_budget_says_so(tmp_path, frames, monkeypatch, serial):
    threads, real = [], pipeline.draw_instances
    monkeypatch.setattr(pipeline, "draw_instances", lambda *args: threads.append(threading.current_thread().name) or real(*args))
    _, budget = pipeline.run(iter(frames), one_detection(0.9), lambda drawn: video_io.write_mp4(drawn, tmp_path / "out.mp4", 10),
                             track=True, serial=serial)
    assert threads == [threading.main_thread().name if serial else "encode"] * len(frames)
    overlapped = {row["stage"] for row in budget.rows() if row["overlapped"]}
    assert overlapped == (set() if serial else {"decode", "draw", "encode"})


@pytest.mark.parametrize("serial", [True, False])
def test_the_budget_adds_up_to_the_wall_time(tmp_path, untrained_toycity_model, frames, serial):
    detect = pipeline.eager_detector(untrained_toycity_model)
    path, budget = pipeline.run(iter(frames), detect, lambda drawn: video_io.write_mp4(drawn, tmp_path / "out.mp4", 10),
                                track=True, min_score=0.05, serial=serial)
    assert video_io.count_frames(path) == len(frames) == budget.frames
    assert abs(budget.accounted_s() - budget.wall_s) <= 0.1 * budget.wall_s
    assert all(budget.seconds[stage] > 0 for stage in pipeline.STAGES)
    assert [row["stage"] for row in budget.rows()] == list(pipeline.STAGES) + ([] if serial else ["wait"])


def test_an_error_on_the_decoder_thread_is_raised_once_and_nothing_is_written(tmp_path, frames):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")

    def broken():
        yield from frames[:3]
        raise BadInput("frame 4 does not decode")

    with pytest.raises(BadInput, match="frame 4"):
        pipeline.run(broken(), one_detection(0.9), lambda drawn: video_io.write_mp4(drawn, out, 10))
    assert out.read_bytes() == b"an earlier result" and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert all(t.name not in ("decode", "encode") for t in threading.enumerate())


def test_ctrl_c_in_the_model_stops_both_workers_and_keeps_the_earlier_file(tmp_path, frames):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")
    calls = []

    def interrupted(batch, clock):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return one_detection(0.9)(batch, clock)

    with pytest.raises(KeyboardInterrupt):
        pipeline.run(iter(frames * 20), interrupted, lambda drawn: video_io.write_mp4(drawn, out, 10))
    assert out.read_bytes() == b"an earlier result" and [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    assert all(t.name not in ("decode", "encode") for t in threading.enumerate())


def test_video_bench_writes_the_budget_and_the_machine(tmp_path, small_model, frames, capsys):
    clip_path = video_io.write_mp4(frames, tmp_path / "clip.mp4", 10)
    bench = tmp_path / "budget.json"
    assert main(["video", str(clip_path), str(tmp_path / "out.mp4"), "--track", "--bench", str(bench), "--force-loaded"]) == 0
    printed = capsys.readouterr().out
    assert all(stage in printed for stage in pipeline.STAGES) and "whole command" in printed
    record = json.loads(bench.read_text())
    assert {"device", "cpu_features", "threads", "load_average_1min", "cores", "versions", "date", "command",
            "settings", "budget", "command_s"} <= set(record) and record["budget"]["accounting"] == pipeline.ACCOUNTING
    assert set(record["load_average_1min"]) == {"before", "after"} and record["budget"]["frames"] == len(frames)
    assert [row["stage"] for row in record["budget"]["stages"]] == [*pipeline.STAGES, "wait"]
    assert record["command_s"] >= record["budget"]["wall_s"] and record["settings"]["pipeline"] == "streaming"


# --------------------------------------------------------------------------- the export cache

needs_deploy = pytest.mark.skipif(not deploy.available(), reason="needs course_lib[deploy]")


@pytest.fixture
def counted_exports(monkeypatch):
    from course_lib.deploy import variants

    calls = []
    real = variants.export_onnx
    monkeypatch.setattr(variants, "export_onnx", lambda *args, **kwargs: calls.append(args[2:4]) or real(*args, **kwargs))
    return calls


@needs_deploy
def test_a_second_run_reuses_the_cached_export_and_any_change_misses(tmp_path, untrained_toycity_model, counted_exports):
    from course_lib.deploy import variants
    from course_lib.deploy.cache import cached_predictor

    model, image = untrained_toycity_model, torch.rand(3, 64, 128)
    ort = variants.parse("ort")
    first, hit = cached_predictor(model, ort, (64, 128), None, 0, tmp_path)
    assert not hit and len(counted_exports) == 1
    again, hit = cached_predictor(model, ort, (64, 128), None, 0, tmp_path)
    assert hit and len(counted_exports) == 1, "a second run loads the cached file: no second export"
    torch.testing.assert_close(again([image])[0]["scores"], first([image])[0]["scores"])
    (doubled,) = again.detect_frames([np.zeros((128, 256, 3), np.uint8)], pipeline.StageClock())  # resized, pasted back
    assert doubled["masks"].shape[-2:] == (128, 256)
    with pytest.raises(BadInput, match="squashed"):
        again.detect_frames([np.zeros((100, 100, 3), np.uint8)], pipeline.StageClock())
    for changed in [dict(variant=ort, size=(96, 128)), dict(variant=variants.parse("ort@det_20"), size=(64, 128))]:
        exports = len(counted_exports)
        assert not cached_predictor(model, changed["variant"], changed["size"], None, 0, tmp_path)[1]
        assert len(counted_exports) == exports + 1
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.bias[0] += 1.0  # other weights
    try:
        assert not cached_predictor(model, ort, (64, 128), None, 0, tmp_path)[1]
    finally:
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.bias[0] -= 1.0


@needs_deploy
def test_a_damaged_cache_entry_is_rebuilt_not_loaded(tmp_path, untrained_toycity_model, counted_exports):
    from course_lib.deploy import variants
    from course_lib.deploy.cache import cached_predictor

    ort = variants.parse("ort")
    cached_predictor(untrained_toycity_model, ort, (64, 128), None, 0, tmp_path)
    (onnx_file,) = tmp_path.glob("*/*.onnx")
    onnx_file.write_bytes(onnx_file.read_bytes()[: onnx_file.stat().st_size // 2])  # cut short, as by a full disk
    predictor, hit = cached_predictor(untrained_toycity_model, ort, (64, 128), None, 0, tmp_path)
    assert not hit and len(counted_exports) == 2
    assert predictor([torch.rand(3, 64, 128)])[0]["boxes"].shape[1] == 4
    (entry,) = tmp_path.glob("*/entry.json")
    entry.write_text("{not json")
    assert not cached_predictor(untrained_toycity_model, ort, (64, 128), None, 0, tmp_path)[1]


@needs_deploy
def test_a_cached_openvino_export_is_compiled_once_and_a_damaged_compiled_file_is_compiled_again(tmp_path, untrained_toycity_model):
    from course_lib.deploy import variants
    from course_lib.deploy.cache import COMPILED, cached_predictor

    ov, image = variants.parse("ov_fp32"), torch.rand(3, 64, 128)
    built, _ = cached_predictor(untrained_toycity_model, ov, (64, 128), None, 0, tmp_path)
    loaded, hit = cached_predictor(untrained_toycity_model, ov, (64, 128), None, 0, tmp_path)
    (folder,) = tmp_path.glob(f"*/{COMPILED}")
    blobs = [path for path in folder.iterdir() if path.is_file() and path.stat().st_size > 0]
    assert hit and blobs, "the first load keeps the compiled model"
    for blob in blobs:
        blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])  # cut short, as by a full disk
    again, hit = cached_predictor(untrained_toycity_model, ov, (64, 128), None, 0, tmp_path)
    assert hit
    for predictor in (loaded, again):
        torch.testing.assert_close(predictor([image])[0]["scores"], built([image])[0]["scores"])


@needs_deploy
def test_an_export_at_the_trained_size_pasted_at_the_frames_matches_the_eager_model_on_the_frame(tmp_path):
    """Frames of 256x512 resized to the 128x256 the model was trained at, masks pasted at 256x512:
    the same detections as the eager model given the whole frame (its transform resizes it the same way)."""
    from course_lib.deploy import variants
    from course_lib.deploy.cache import cached_predictor

    model = zoo.load("toycity", device="cpu").eval()
    predictor, _ = cached_predictor(model, variants.parse("ort"), (128, 256), None, 0, tmp_path)
    frame = clip(5, 1, 256, 512)[0][0]
    with torch.inference_mode():
        reference = model([torch.from_numpy(frame).permute(2, 0, 1).float() / 255])[0]
    (output,) = predictor.detect_frames([frame], pipeline.StageClock())
    assert len(reference["boxes"]) > 3 and output["masks"].shape[-2:] == (256, 512)
    assert torch.equal(output["labels"], reference["labels"])
    torch.testing.assert_close(output["boxes"], reference["boxes"], atol=0.05, rtol=0)
    assert ((output["masks"] > 0.5) != (reference["masks"] > 0.5)).float().mean() < 1e-3


@needs_deploy
def test_video_runtime_exports_once_then_runs_from_the_cache_with_torch_on_one_thread(tmp_path, small_model, monkeypatch,
                                                                                        frames, capsys, counted_exports):
    monkeypatch.setenv("COURSE_EXPORT_CACHE", str(tmp_path / "cache"))
    clip_path = video_io.write_mp4(frames[:3], tmp_path / "clip.mp4", 10)
    threads_inside, real_run = [], pipeline.run
    monkeypatch.setattr(pipeline, "run", lambda *args, **kwargs: threads_inside.append(torch.get_num_threads()) or real_run(*args, **kwargs))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for out in ("first.mp4", "second.mp4"):
            assert main(["video", str(clip_path), str(tmp_path / out), "--track", "--runtime", "ort"]) == 0
        assert torch.get_num_threads() == 2, "restored after the run"
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert len(counted_exports) == 1 and "(exported now, cached)" in printed and "(cached)" in printed
    assert threads_inside == [1, 1]  # torch's threads would spin against the runtime's
    assert video_io.count_frames(tmp_path / "second.mp4") == 3
