"""The committed results files: read, write, and tabulate them."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from course_lib.utils.atomic import write_json

#: Where the committed results files live, relative to the package folder.
RESULTS_DIR = "assets/results"


def save_results(results: dict, path: str | Path) -> Path:
    """Write ``results`` as JSON to ``path`` atomically (:func:`course_lib.utils.atomic.write_json`)."""
    return write_json(path, results, indent=2)


def load_results(name: str = "bench_cpu.json") -> dict:
    """Committed results shipped with the package (``course_lib/assets/results/NAME``)."""
    path = resources.files("course_lib") / RESULTS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no committed benchmark {name!r}: run `python -m course_lib bench --out course_lib/{RESULTS_DIR}/{name}`")
    return json.loads(path.read_text())


def load_text(results: dict) -> str:
    """The load average a results file's timing ran under, in words, from the record of
    :func:`course_lib.utils.timing.checked_load` (``load_average_1min`` ``{before, after}``, ``cores``,
    ``forced_under_load``)."""
    load = results["load_average_1min"]
    forced = " (written under load with --force-loaded)" if results["forced_under_load"] else ""
    return f"load average {load['before']:.2f} before, {load['after']:.2f} after, on {results['cores']} cores{forced}"


def results_table(results: dict) -> str:
    """A Markdown table of the variants (latency, FPS, speed-up, mask AP and its drop)."""
    evaluated = "mask_AP" in results["variants"][0]
    header = "| variant | what changes | median ms | p90 ms | FPS | speed-up |" + (" mask AP | drop (points) |" if evaluated else "")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in results["variants"]:
        line = f"| {row['name']} | {row['description']} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {row['fps']:.1f} | {row['speedup']:.2f}x |"
        if evaluated:
            line += f" {100 * row['mask_AP']:.1f} | {row['mask_AP_drop']:+.1f} |"
        lines.append(line)
    return "\n".join(lines)


def pareto_front(results: dict) -> list[str]:
    """Names of the variants no other variant beats on both latency and mask AP, fastest first."""
    # At equal latency the more accurate variant comes first: it dominates the other.
    rows = sorted(results["variants"], key=lambda r: (r["median_ms"], -r["mask_AP"]))
    front, best_ap = [], -1.0
    for row in rows:
        if row["mask_AP"] > best_ap:
            front.append(row["name"])
            best_ap = row["mask_AP"]
    return front
