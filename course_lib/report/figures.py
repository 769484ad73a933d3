"""Figures of the committed results files (training curves, benchmarks, tracker cost).

The portfolio pages, the training chapter and the Experiments appendix draw their figures here, so
a reader of those pages sees a figure, not a screen of plotting code. Every function returns a
``matplotlib.figure.Figure`` built without pyplot: a notebook shows it once, as the cell's value,
and a test can count its axes. Inputs are the dictionaries ``course_lib.results.load_results`` returns.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from course_lib.engine.recipes import lr_factor
from course_lib.modeling.stage_timing import STAGES
from course_lib.results import pareto_front


def training_curve(results: dict, longer: dict | None = None, bar: float = 0.5) -> Figure:
    """Held-out mask AP, AP50 and box AP against minutes of training (wall and CPU), with ``longer``'s mask AP dashed."""
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, clock in zip(axes, ("train_wall_s", "train_cpu_s")):
        for key in ("segm_AP", "segm_AP50", "bbox_AP"):
            ax.plot([p[clock] / 60 for p in results["curve"]], [p[key] for p in results["curve"]], marker="o", label=key)
        if longer is not None:
            run = longer["training"]
            ax.plot([p[clock] / 60 for p in longer["curve"]], [p["segm_AP"] for p in longer["curve"]], "k--", marker=".",
                    label=f"segm_AP, {run['steps']} steps, {run['schedule']} (not shipped)")
        ax.axhline(bar, color="grey", ls=":", lw=1)
        ax.set(xlabel=f"training time, minutes ({clock.split('_')[1]})", title="held-out ToyCity AP")
    axes[0].set_ylabel("AP")
    axes[0].legend(fontsize=7)
    return fig


def training_curve_and_loss(results: dict, window: int = 20) -> Figure:
    """Held-out AP (%) against minutes of optimiser steps, and the per-step loss with its running mean over ``window``."""
    curve, losses = results["curve"], results["loss"]
    fig = Figure(figsize=(12, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    minutes = [r["train_wall_s"] / 60 for r in curve]
    for key, name in (("segm_AP", "mask AP"), ("segm_AP50", "mask AP50"), ("bbox_AP", "box AP")):
        left.plot(minutes, [100 * r[key] for r in curve], "o-", label=name)
    left.set(xlabel="training time (minutes of optimiser steps, CPU)", ylabel="held-out ToyCity AP (%)")
    left.legend()
    steps = [r["step"] for r in losses]
    smooth = [sum(r["loss"] for r in losses[max(0, i - window + 1): i + 1]) / min(i + 1, window) for i in range(len(losses))]
    right.plot(steps, [r["loss"] for r in losses], lw=0.6, alpha=0.5, label="per step")
    right.plot(steps, smooth, label=f"mean of the last {window}")
    right.set(xlabel="step", ylabel="total training loss")
    right.legend()
    return fig


def decay_comparison(runs: Mapping[str, dict]) -> Figure:
    """Left: the cosine and linear learning-rate factors of the first run; right: each run's held-out mask AP by step."""
    first = next(iter(runs.values()))["training"]
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax_lr, ax_ap = fig.subplots(1, 2)
    for schedule in ("cosine", "linear"):
        ax_lr.plot([lr_factor(s, steps=first["steps"], warmup_steps=first["warmup_steps"], schedule=schedule)
                    for s in range(first["steps"])], label=schedule)
    for run in runs.values():
        ax_ap.plot([p["step"] for p in run["curve"]], [p["segm_AP"] for p in run["curve"]], marker="o",
                   label=f"{run['training']['schedule']}, seed {run['training']['seed']}",
                   ls="-" if run["training"]["schedule"] == "linear" else "--")
    ax_lr.set(xlabel="step", ylabel="lr / base lr", title="the two decays")
    ax_ap.axhline(0.5, color="grey", ls=":", lw=1)
    ax_ap.set(xlabel="step", ylabel="held-out mask AP", title="one recipe, four runs")
    ax_lr.legend()
    ax_ap.legend(fontsize=8)
    return fig


def speed_and_stages(speed_run: dict) -> Figure:
    """Left: latency against mask AP with the Pareto front; right: each variant's time per image by stage."""
    fig = Figure(figsize=(13, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(1.2, 1))
    pareto_plot(speed_run, ax=left)
    stage_bars(right, {row["name"]: row["stages_ms"] for row in speed_run["variants"]})
    return fig


def stage_bars(ax, stages_ms: Mapping[str, Mapping[str, float]]) -> None:
    """One horizontal bar per entry of ``stages_ms`` (name -> milliseconds per stage of
    :data:`course_lib.modeling.stage_timing.STAGES`), stacked stage by stage in forward order, first entry on top."""
    names = list(stages_ms)
    left = [0.0] * len(names)
    for stage in STAGES:
        values = [stages_ms[name].get(stage, 0.0) for name in names]
        ax.barh(names, values, left=left, label=stage)
        left = [a + v for a, v in zip(left, values)]
    ax.invert_yaxis()
    ax.set_xlabel("time per image by stage (ms)")
    ax.legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")


def pareto(speed_run: dict) -> Figure:
    """Latency against mask AP of every variant, the Pareto front joined (one panel, for slides)."""
    fig = Figure(figsize=(7, 3.6), layout="constrained")
    pareto_plot(speed_run, ax=fig.subplots())
    return fig


def tracker_cost(tracker: dict) -> Figure:
    """The tracker's update and mask-pasting time per frame, on the frame size and device its file names."""
    frame = f"{tracker['frame_size'][0]}x{tracker['frame_size'][1]}"
    parts = {f"tracker update, {frame}": tracker["update_ms"], f"mask pasting, {frame}": tracker["paste_ms"]}
    fig = Figure(figsize=(7, 2.0), layout="constrained")
    ax = fig.subplots()
    ax.barh(list(parts), list(parts.values()), color=["tab:orange", "tab:green"])
    ax.invert_yaxis()
    ax.set_xlabel("ms per frame")
    ax.set_title(f"{tracker['instances_per_frame']:.0f} instances per frame, {tracker['device']}", fontsize=9)
    return fig


def pareto_plot(results: dict, ax=None):
    """Latency (x, log scale) against mask AP (y), one labelled point per variant, Pareto front joined."""
    ax = ax or plt.subplots(figsize=(7, 4.5))[1]
    rows = {row["name"]: row for row in results["variants"]}
    for name, row in rows.items():
        ax.scatter(row["median_ms"], 100 * row["mask_AP"], color="tab:blue")
        ax.annotate(name, (row["median_ms"], 100 * row["mask_AP"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = [rows[name] for name in pareto_front(results)]
    ax.plot([r["median_ms"] for r in front], [100 * r["mask_AP"] for r in front], color="tab:orange", label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("median latency per image (ms, log scale)")
    ax.set_ylabel("mask AP (%)")
    ax.set_title(f"{results['model']} on {results['data']}\n{results['device']}", fontsize=9)
    ax.legend()
    return ax
