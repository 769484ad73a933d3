"""The README's results table, generated from the committed results files (never typed by hand).

``python -m course_lib.report`` prints it; ``tests/test_readme.py`` fails when the README's copy
differs from what the files say, so every number in the README traces to a file and its label.
"""

from __future__ import annotations

import re
from importlib import resources

from course_lib import results
from course_lib.data.toycity import HELD_OUT_SEED
from course_lib.zoo import registry

#: The recipe shipped before repeat-factor sampling (1,300 steps, linear decay, seed 0) first, then
#: the same recipe with another seed, the other decay, or both.
SEED_AND_SCHEDULE_RUNS = ("toycity_training_linear.json", "toycity_training_seed1.json", "toycity_training_cosine.json",
                          "toycity_training_cosine_seed1.json")


#: Training levers whose runs wrote no results file: each record is the chapter's text at the commit that measured it.
LEVERS = "toycity_levers.json"


def levers_table() -> str:
    """A Markdown table of the recorded levers: what changed, steps, minutes, mask AP against its baseline, source commit."""
    levers = results.load_results(LEVERS)["levers"]
    rows = ["| lever | command | steps | train min | mask AP | baseline (mask AP) | finding | source |", "|---|---|---|---|---|---|---|---|"]
    for lever in levers:
        minutes = f"{lever['train_wall_s'] / 60:.1f}" if "train_wall_s" in lever else "-"
        baseline = f"{lever['baseline']} ({lever['baseline_segm_AP']:.3f})" if "baseline_segm_AP" in lever else lever["baseline"]
        rows.append(f"| {lever['lever']} | `{lever['command']}` | {lever.get('steps', '-')} | {minutes} | {lever['segm_AP']:.3f} | "
                    f"{baseline} | {lever['finding']} | {lever['source_commit'][:7]} ({lever['source_date'][:10]}) |")
    return "\n".join(rows)


def runs_500_table() -> str:
    """A Markdown table of ``toycity_runs_500.json``: per run, training time and mask AP on each held-out split."""
    runs = results.load_results("toycity_runs_500.json")
    seeds = [str(seed) for seed in runs["data_seeds"]]
    rows = ["| run | command | train s | AP, bar's 100 | " + " | ".join(f"AP, {runs['length']} @ {seed}" for seed in seeds) + " | mean |",
            "|---|---|---|---|" + "---|" * len(seeds) + "---|"]
    for row in runs["runs"]:
        rows.append(f"| {row['run']} | `{row['command']}` | {row['train_wall_s']:.0f} | {row['training_split_segm_AP']:.3f} | "
                    + " | ".join(f"{row['splits'][seed]['segm_AP']:.3f}" for seed in seeds) + f" | {row['mean_segm_AP']:.3f} |")
    return "\n".join(rows)


def _row(result: str, value: str, source: str, where: str) -> str:
    return f"| {result} | {value} | {source} | {where} |"


def readme_results() -> str:
    """A Markdown table: result, value, what it was measured on, and the file it comes from (AP in points)."""
    rows = ["| Result | Value | Model, data, device | From |", "|---|---|---|---|"]
    rows += _shipped_model_rows() + _training_rows() + _inference_rows() + _tracker_and_generation_rows()
    rows += [_detectron2_row()] + _tracker_comparison_rows() + [_video_row()] + _gpu_rows()
    return "\n".join(rows)


def _held_out(training: dict) -> str:
    """The data column of a result on the shipped model's held-out scenes."""
    return f"ToyCity model, ToyCity held-out ({training['val_scenes']})"


def _shipped_model_rows() -> list[str]:
    """Mask and box AP of the shipped ToyCity model, its training time and the time of one training step."""
    manifest = registry.toycity_manifest()
    metrics, training = manifest["metrics"], manifest["training"]
    step_source = results.load_results("train_step_cpu.json")
    steps = {row["name"]: row for row in step_source["variants"]}
    return [
        _row("Mask AP / AP50", f"{100 * metrics['segm_AP']:.1f} / {100 * metrics['segm_AP50']:.1f}", _held_out(training),
             "`course_lib/assets/toycity_maskrcnn.json`"),
        _row("Box AP / AP50", f"{100 * metrics['bbox_AP']:.1f} / {100 * metrics['bbox_AP50']:.1f}", _held_out(training),
             "`course_lib/assets/toycity_maskrcnn.json`"),
        _row("Training time",
             f"{training['train_wall_s'] / 60:.1f} min wall, {training['train_cpu_s'] / 60:.1f} CPU-min ({training['steps']} steps"
             + (f"; repeat threshold {training['repeat_threshold']}, its label scan {training['label_scan_s']:.0f} s not counted)"
                if training.get("repeat_threshold") else ")"),
             f"{training.get('cpu', 'CPU')}, {training['threads']} threads{', bfloat16 autocast' if training.get('amp_bf16') else ''}, "
             f"load average {training['load_average_1min']['before']:.1f} before",
             "`course_lib/assets/toycity_maskrcnn.json`"),
        _row(f"Training step ({step_source['batch_size']} images)",
             f"{steps['kernel_pooler']['median_ms']:.0f} ms with torchvision's RoI Align kernel, "
             f"{steps['separable_pooler']['median_ms']:.0f} ms with the separable one, "
             f"{steps['separable_amp']['median_ms']:.0f} ms adding bfloat16 ({steps['separable_amp']['speedup']:.2f}x), "
             f"{steps['separable_amp_2proc']['median_ms']:.0f} ms in 2 processes of 1 thread",
             f"{step_source['model']}, {step_source['data']}, {step_source['device']}, {step_source['threads']} threads",
             "`course_lib/assets/results/train_step_cpu.json`"),
    ]


def _training_rows() -> list[str]:
    """Mask AP along training: within 10 minutes, with twice the steps, across seeds and decays, on larger splits, per lever."""
    held_out = _held_out(registry.toycity_manifest()["training"])
    # the previous recipe's run and the same recipe with the other seed and/or the other learning-rate decay
    runs = {name: results.load_results(name) for name in SEED_AND_SCHEDULE_RUNS}
    curve = results.load_results("toycity_training.json")["curve"]  # the shipped run
    longer = results.load_results("toycity_training_2x.json")
    larger = results.load_results("toycity_runs_500.json")  # data_scripts/compare_toycity_runs.py
    finals = [run["curve"][-1]["segm_AP"] for run in runs.values()]
    first_above = next((point for point in longer["curve"] if point["segm_AP"] >= 0.5), None)
    levers = results.load_results(LEVERS)
    # the last evaluation within the first 10 minutes of training (the course's budget)
    early = max((point for point in curve if point["train_wall_s"] <= 600), key=lambda point: point["step"])
    return [
        _row("Mask AP within 10 min of training",
             f"{100 * early['segm_AP']:.1f} (step {early['step']}, {early['train_wall_s'] / 60:.1f} min wall)",
             held_out, "`course_lib/assets/results/toycity_training.json`"),
        _row("Mask AP, the previous recipe with twice the steps (not shipped)",
             f"{100 * longer['curve'][-1]['segm_AP']:.1f} after {longer['training']['train_wall_s'] / 60:.1f} min wall "
             f"({longer['training']['steps']} steps, {longer['training']['schedule']} schedule); "
             + (f"first evaluation at or above 50: {first_above['train_wall_s'] / 60:.1f} min (step {first_above['step']})"
                if first_above else "never at or above 50"),
             held_out, "`course_lib/assets/results/toycity_training_2x.json`"),
        _row(f"Mask AP, the previous recipe's runs ({runs[SEED_AND_SCHEDULE_RUNS[0]]['training']['steps']} steps, no repeat factors): seed and decay",
             "; ".join(f"{run['training']['schedule']}, seed {run['training']['seed']}: {100 * run['curve'][-1]['segm_AP']:.1f} "
                       f"({run['training']['train_wall_s'] / 60:.1f} min)" for run in runs.values())
             + f"; mean {100 * sum(finals) / len(finals):.1f}",
             held_out, ", ".join(f"`course_lib/assets/results/{name}`" for name in runs)),
        _row("Mask AP on larger held-out splits, per run (mean of the splits)",
             "; ".join(f"{row['run']}: {100 * row['mean_segm_AP']:.1f} ({row['train_wall_s'] / 60:.1f} min)" for row in larger["runs"]),
             f"ToyCity models, ToyCity held-out ({len(larger['data_seeds'])} x {larger['length']} scenes from seeds "
             f"{', '.join(map(str, larger['data_seeds']))}), evaluated on {larger['evaluated_on']}",
             "`course_lib/assets/results/toycity_runs_500.json`"),
        _row("Mask AP of the training levers recorded without their own results file (one run each)",
             f"{len(levers['levers'])} levers, mask AP {100 * min(row['segm_AP'] for row in levers['levers']):.1f} to "
             f"{100 * max(row['segm_AP'] for row in levers['levers']):.1f}; each row in the Experiments appendix",
             f"ToyCity models, ToyCity held-out (ToyCityDataset(seed={HELD_OUT_SEED}, length=100) at 128x256), 2-core CPU",
             "`course_lib/assets/results/toycity_levers.json`"),
    ]


def _inference_rows() -> list[str]:
    """CPU inference: the baseline, the eager variants, the fastest runtime within 1 AP point, the fastest on R50-FPN."""
    speed = results.load_results("bench_cpu.json")
    variants = {row["name"]: row for row in speed["variants"]}
    speed_label = f"{speed['model']}, {speed['data']}, {speed['device']}, {speed['threads']} thread(s)"
    rows = [_row("Inference, baseline", f"{variants['baseline']['median_ms']:.0f} ms/image, mask AP {100 * variants['baseline']['mask_AP']:.1f}",
                 speed_label, "`course_lib/assets/results/bench_cpu.json`")]
    for name in ("fast", "fast_bf16"):
        row = variants[name]
        rows.append(_row(f"Inference, `{name}`",
                         f"{row['speedup']:.2f}x faster, mask AP {round(-row['mask_AP_drop'], 1) + 0.0:+.1f} points",  # drop is in points; + 0.0 turns -0.0 into 0.0
                         speed_label, "`course_lib/assets/results/bench_cpu.json`"))
    deployed = results.load_results("deploy_cpu.json")  # runtimes, timed interleaved with the eager model
    within = max((row for row in deployed["variants"] if row["mask_AP_drop"] <= 1.0), key=lambda row: row["speedup"])
    rows.append(_row(f"Inference, runtime `{within['name']}` (fastest within 1 AP point)",
                     f"{within['speedup']:.2f}x faster, mask AP {round(-within['mask_AP_drop'], 1) + 0.0:+.1f} points",
                     f"{deployed['model']}, {deployed['data']}, {deployed['device']}, {deployed['threads']} thread(s)",
                     "`course_lib/assets/results/deploy_cpu.json`"))
    large = results.load_results("deploy_r50_cpu.json")
    fastest = max(large["variants"], key=lambda row: row["speedup"])
    rows.append(_row(f"Inference, runtime `{fastest['name']}`, R50-FPN v2", f"{fastest['speedup']:.2f}x faster",
                     f"{large['model']}, {large['input_size'][0]}x{large['input_size'][1]}, {large['device']}, "
                     f"{large['threads']} thread(s)", "`course_lib/assets/results/deploy_r50_cpu.json`"))
    return rows


def _tracker_and_generation_rows() -> list[str]:
    """What the tracker costs per frame, and how fast ToyCity scenes are generated."""
    tracker = results.load_results("tracker_cpu.json")
    toycity_speed = results.load_results("toycity_speed.json")
    return [
        _row("Tracker overhead", f"{tracker['update_ms']:.2f} ms/frame at {tracker['instances_per_frame']:.1f} instances",
             f"ToyCity frames {tracker['frame_size'][0]}x{tracker['frame_size'][1]}, {tracker['device']}",
             "`course_lib/assets/results/tracker_cpu.json`"),
        _row("ToyCity generation", f"{toycity_speed['scene_images_per_s']:.0f} scenes/s with ground truth",
             f"{toycity_speed['size'][0]}x{toycity_speed['size'][1]}, 1 CPU thread",
             "`course_lib/assets/results/toycity_speed.json`"),
    ]


def _detectron2_row() -> str:
    """How closely the converted Detectron2 model-zoo model reproduces Detectron2 itself."""
    equality = results.load_results("detectron2_equality.json")  # data_scripts/detectron2_equality.py
    exact = equality["comparisons"]["pil"]  # the default resize against Detectron2's DefaultPredictor
    images = exact["images"]
    return _row(
        "Detectron2 model-zoo conversion vs Detectron2 itself",
        f"{sum(r['matched'] for r in images)}/{sum(r['detections_detectron2'] for r in images)} detections paired, "
        f"max box diff {exact['max_abs_box_diff_px']:.1e} px, max score diff {exact['max_abs_score_diff']:.1e}, "
        f"mask pixels differing {exact['mask_pixel_disagreement']:.1e}"
        + (" (within tolerance)" if equality["within_tolerance"] else " (OUTSIDE tolerance)"),
        f"{equality['entry']}, random weights, {len(images)} images resized by both as Detectron2's DefaultPredictor does "
        f"({', '.join('x'.join(map(str, r['size_hw'])) for r in images)}), {equality['device']}",
        "`course_lib/assets/results/detectron2_equality.json`")


def _video_row() -> str:
    """``video --track`` end to end: frame rate and whole command, before (eager, serial) and after (cached INT8 export)."""
    budget = results.load_results("video_budget.json")  # data_scripts/video_budget.py
    before, first, after = budget["rows"][0], budget["rows"][2], budget["rows"][-1]
    return _row("`video --track` end to end (side by side)",
                f"{before['fps']:.1f} -> {after['fps']:.1f} frames/s; whole command {before['command_s']:.1f} s "
                f"({before['name']}), {first['command_s']:.1f} s ({first['name']}), {after['command_s']:.1f} s ({after['name']})",
                f"ToyCity clip of {budget['clip']['frames']} frames at {budget['clip']['size'][0]}x{budget['clip']['size'][1]}, "
                f"{budget['device']}, {budget['threads']} threads", "`course_lib/assets/results/video_budget.json`")


def _tracker_comparison_rows() -> list[str]:
    """One row per detection source: HOTA and tracker-only time of the course's tracker and boxmot's."""
    comparison = results.load_results("tracker_comparison.json")  # data_scripts/compare_trackers.py
    setting = (f"{len(comparison['clips'])} ToyCity clips of {comparison['frames']} frames at "
               f"{comparison['size'][0]}x{comparison['size'][1]}, TrackEval, {comparison['device']}, "
               f"{comparison['threads']} thread")
    return [_row(f"Tracker comparison on {source} detections (HOTA, median ms/frame of the tracker alone)",
                 "; ".join(f"{name} {row['HOTA']:.3f} ({row['ms_per_frame']:.1f} ms)" for name, row in trackers.items()),
                 setting, "`course_lib/assets/results/tracker_comparison.json`")
            for source, trackers in comparison["results"].items()]


def _gpu_rows() -> list[str]:
    """GPU inference and training-step results: each row names the GPU and the versions its file records."""
    rows = []
    for name in ("deploy_gpu.json", "deploy_gpu_512.json"):  # data_scripts/bench_gpu.py
        result = results.load_results(name)
        variants = {row["name"]: row for row in result["variants"]}
        best = max(result["variants"], key=lambda row: row["fps"])
        size = re.search(r"\d+x\d+", result["what"]).group()
        rows.append(_row(f"GPU inference, R50-FPN v2 at {size} (random weights)",
                         f"fp32 {variants['fp32']['fps']:.1f} FPS; best `{best['name']}` {best['fps']:.1f} FPS "
                         f"({best['speedup']:.2f}x)",
                         f"{result['what']}, {result['device']}, torch {result['torch']}",
                         f"`course_lib/assets/results/{name}`"))
    toycity = results.load_results("bench_gpu.json")
    baseline = next(row for row in toycity["variants"] if row["name"] == "baseline")
    rows.append(_row("GPU inference, ToyCity model", f"{baseline['median_ms']:.1f} ms/image, mask AP {100 * baseline['mask_AP']:.1f}",
                     f"{toycity['model']}, {toycity['data']}, {toycity['device']}, torch {toycity['torch']}",
                     "`course_lib/assets/results/bench_gpu.json`"))
    steps = results.load_results("train_step_gpu.json")
    fastest = max(steps["variants"], key=lambda row: row["images_per_s"])
    rows.append(_row(f"GPU training step ({steps['batch_size']} images)",
                     f"{fastest['images_per_s']:.0f} images/s with {fastest['description']}",
                     f"{steps['model']}, {steps['data']}, {steps['device']}, torch {steps['torch']}",
                     "`course_lib/assets/results/train_step_gpu.json`"))
    return rows


def results_files() -> list[str]:
    """Names of the committed results files."""
    folder = resources.files("course_lib") / results.RESULTS_DIR
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))

