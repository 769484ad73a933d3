# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Experiments
#
# The record behind the [training chapter](week2/03_training.ipynb)'s recipe: every lever that was
# tried on the way to the shipped ToyCity model, with its command, its results file and its number.
# Nothing on this page is typed: each table is generated from a file under
# `course_lib/assets/results/`, and each file names its command, device and date. All of them are
# ToyCity numbers (held-out mask AP of the small CPU model), never Cityscapes numbers.
#
# Read them with the noise in mind: one run per lever, and two seeds of one recipe differ by
# about as much as most levers move (the seed table below measures it).

# %% tags=["remove-cell"]
# Colab: install the course library (a no-op everywhere else).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/urban-seg-course/urban-scene-instance-segmentation"], check=True)

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from course_lib import environment, results, zoo
from course_lib.data.toycity import held_out
from course_lib.engine import step_benchmark
from course_lib.evaluation.coco_eval import coco_metrics
from course_lib.evaluation.inference import inference_on_dataset
from course_lib.report import figures, tables

shipped = results.load_results("toycity_training.json")
print("[results from toycity_training.json] the shipped run:", shipped["command"])
print(f"{shipped['training']['cpu']}, {shipped['training']['threads']} threads, {shipped['training']['date']}: "
      f"mask AP {shipped['final']['segm']['AP']:.3f} after {shipped['training']['train_wall_s']:.0f} s of training")

# %% [markdown]
# ## One recipe, two seeds, two decays
#
# The recipe shipped before repeat-factor sampling, run with two seeds (other initial weights and
# batch order, same scenes) under a cosine and a linear learning-rate decay, evaluated at regular
# steps on the held-out scenes:

# %% tags=["hide-input"]
runs = {name: results.load_results(name) for name in tables.SEED_AND_SCHEDULE_RUNS}
for name, run in runs.items():
    print(f"{name:<36} {run['command']}  ({run['training']['date']})")
display(figures.decay_comparison(runs))
final_ap = {name: run["curve"][-1]["segm_AP"] for name, run in runs.items()}
for schedule in ("linear", "cosine"):
    aps = [ap for name, ap in final_ap.items() if runs[name]["training"]["schedule"] == schedule]
    print(f"{schedule}: final mask AP {', '.join(f'{ap:.3f}' for ap in aps)}; mean {sum(aps) / len(aps):.3f}, seeds {max(aps) - min(aps):.3f} apart")
differs = {name: sorted(k for k in run["training"] if k not in {"schedule", "seed", "date", "train_wall_s", "train_cpu_s",
                                                                "total_wall_s_with_eval", "load_average_1min"}
                        and run["training"][k] != runs[tables.SEED_AND_SCHEDULE_RUNS[0]]["training"][k]) for name, run in runs.items()}
assert not any(differs.values()), f"the four runs differ in more than seed and decay: {differs}"

# %% [markdown]
# ## Twice the steps
#
# The cosine recipe stretched to twice the steps (one run): what the ten-minute budget costs.

# %% tags=["hide-input"]
longer = results.load_results("toycity_training_2x.json")
print(f"[results from toycity_training_2x.json] {longer['command']}  ({longer['training']['date']})")
first_above = next((p for p in longer["curve"] if p["segm_AP"] >= 0.5), None)
print(f"final mask AP {longer['curve'][-1]['segm_AP']:.3f} after {longer['training']['train_wall_s'] / 60:.1f} min; first at or above 0.5: "
      + (f"step {first_above['step']}, {first_above['train_wall_s'] / 60:.1f} min" if first_above else "never"))

# %% [markdown]
# ## Repeat factors and more steps, on larger held-out splits
#
# The bar's held-out split has only a hundred scenes, and few trains. `data_scripts/compare_toycity_runs.py`
# evaluates each run's weights on two further splits of held-out scenes: plain sampling against
# repeat factors (`rfs`), two seeds each, the model shipped before them (`previous`), and runs with
# more steps, among them the shipped one.

# %% tags=["hide-input"]
larger = results.load_results("toycity_runs_500.json")
print(f"[results from toycity_runs_500.json] evaluated on {larger['evaluated_on']}, {larger['date']}")
display(Markdown(tables.runs_500_table()))
by_name = {row["run"]: row for row in larger["runs"]}
gain = {seed: by_name[f"rfs_s{seed}"]["mean_segm_AP"] - by_name[f"plain_s{seed}"]["mean_segm_AP"] for seed in (0, 1)}
more_steps = by_name["plain_1650_s0"]["mean_segm_AP"] - by_name["plain_s0"]["mean_segm_AP"]
for seed, value in gain.items():
    print(f"seed {seed}: repeat factors minus plain, mean of the larger splits: {100 * value:+.1f} points")
print(f"more steps, seed 0, plain sampling (plain_1650_s0 minus plain_s0): {100 * more_steps:+.1f} points")
assert all(value > 0 for value in gain.values()), "repeat factors win on the larger splits with both seeds"
assert more_steps > max(gain.values()), "the extra steps gained more than the repeat factors"
assert by_name["shipped"]["command"].split(" --out")[0] == shipped["command"].split(" --out")[0], "the shipped row is the shipped command"

# %% [markdown]
# ## The shipped weights, re-evaluated
#
# A quick check of the shipped weights on a few held-out scenes: this recomputes AP from scratch,
# so it also tests that the committed file loads and runs.

# %% tags=["hide-input"]
manifest = zoo.toycity_manifest()
toy = zoo.load("toycity", device="cpu")
check = held_out(environment.pick(16, 100), manifest["build_kwargs"]["min_size"], manifest["build_kwargs"]["max_size"])
metrics = coco_metrics(*inference_on_dataset(toy, check, device="cpu", batch_size=8))
environment.print_banner("ToyCity model (shipped)", f"ToyCity held-out, first {len(check)} scenes")
print(f"segm AP {metrics['segm']['AP']:.3f}  AP50 {metrics['segm']['AP50']:.3f} | bbox AP {metrics['bbox']['AP']:.3f}")
print(f"(manifest, on {manifest['training']['val_scenes']}: segm AP {manifest['metrics']['segm_AP']:.3f}  AP50 {manifest['metrics']['segm_AP50']:.3f})")
# A few scenes give a noisy estimate: ask only for the same ballpark as the full held-out split.
assert metrics["segm"]["AP50"] > 0.5 * manifest["metrics"]["segm_AP50"], "the shipped weights do not perform as recorded"

# %% [markdown]
# ## Cheaper training steps
#
# With a fixed budget of minutes, a cheaper step is more steps. Two changes make a CPU step cheaper
# without changing what the model computes: RoI Align's backward written as matrix products
# (Week 1, *RoI Align*) instead of torchvision's kernel, which adds every sample's gradient into
# the feature map one value at a time; and autocast to bfloat16 (`--amp on`, the
# default on CPUs with bfloat16 units), which keeps float32's exponent range, so unlike float16 on
# a GPU it needs no loss scaling. One training step timed each way (`python -m course_lib bench
# --train-step`); the last two rows ask whether a second core is better used by a second thread or
# by a second process (`DistributedDataParallel`, `course_lib.engine.distributed`).

# %% tags=["hide-input"]
step_bench = results.load_results("train_step_cpu.json")
print(f"[results from train_step_cpu.json] {step_bench['model']} | {step_bench['data']} | {step_bench['device']}, "
      f"{step_bench['threads']} threads | {step_bench['date']}")
print(step_benchmark.training_step_table(step_bench))
print(f"this machine: bfloat16 units {environment.cpu_has_bf16_units()}")

# %% [markdown]
# ## Levers recorded without a results file of their own
#
# These runs predate the results files above: their numbers were written into the training
# chapter when they were measured. `toycity_levers.json` keeps each one with its command, its
# baseline and the commit that measured it (`git show COMMIT:book/week2/03_training.py` shows the
# original text). One run each, on the held-out split of the bar.

# %% tags=["hide-input"]
levers = results.load_results(tables.LEVERS)
print(f"[results from {tables.LEVERS}] {levers['provenance']}")
display(Markdown(tables.levers_table()))
