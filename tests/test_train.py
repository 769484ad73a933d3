"""course_lib.engine.trainer: exact resume, clean stop on NaN, atomic checkpoints, a loss that falls."""

import dataclasses
import json
import math

import pytest
import torch

from course_lib.cli import train
from course_lib.engine import checkpoint, recipes, trainer
from course_lib.engine.settings import TrainSettings
from course_lib.modeling import maskrcnn as models
from course_lib.structures import instances

H, W = 64, 128


class Shapes(torch.utils.data.Dataset):
    """A few fixed images with one filled rectangle each (class 3 = car); deterministic by index."""

    def __init__(self, length: int = 4):
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        g = torch.Generator().manual_seed(index)
        x0, y0 = int(torch.randint(0, W // 2, (1,), generator=g)), int(torch.randint(0, H // 2, (1,), generator=g))
        x1, y1 = x0 + 24 + 4 * index, y0 + 20
        image = torch.rand(3, H, W, generator=g) * 0.2
        image[:, y0:y1, x0:x1] = torch.tensor([0.9, 0.6, 0.1])[:, None, None]
        masks = torch.zeros(1, H, W, dtype=torch.uint8)
        masks[0, y0:y1, x0:x1] = 1
        target = {"boxes": torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32), "labels": torch.tensor([3]), "masks": masks}
        return image, target


class FailAfter(torch.utils.data.Dataset):
    """Wraps a dataset; from the ``after``-th item on, either raises (an interrupt) or returns NaN images."""

    def __init__(self, base, after: int, mode: str):
        self.base, self.after, self.mode, self.calls = base, after, mode, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        self.calls += 1
        image, target = self.base[index]
        if self.calls > self.after:
            if self.mode == "interrupt":
                raise KeyboardInterrupt("simulated Ctrl-C")
            image = torch.full_like(image, float("nan"))
        return image, target


def _model(seed: int):
    torch.manual_seed(seed)
    return models.build("toycity_small", min_size=H, max_size=W)


RECIPE = dict(batch_size=2, lr=0.01, warmup_steps=2, seed=3)
RUN = dict(checkpoint_every=2, progress=False, device=torch.device("cpu"))


def _settings(**changes) -> TrainSettings:
    return TrainSettings(**{**RECIPE, **changes})


@pytest.mark.parametrize("repeat_factors", [None, [1.0, 2.5, 1.0, 1.5]], ids=["plain", "repeat-factors"])
def test_resume_after_interrupt_gives_identical_weights(tmp_path, repeat_factors):
    steps = 6
    settings, run = _settings(steps=steps), {**RUN, "repeat_factors": repeat_factors}
    reference = _model(0)
    # An evaluation that draws random numbers must not shift the training's random streams.
    noisy_eval = lambda model: {"noise": torch.rand(1).item()}
    history = trainer.train(reference, Shapes(), settings, checkpoint_dir=tmp_path / "a",
                            eval_fn=noisy_eval, eval_every=1, **run)
    assert [r["step"] for r in history["eval"]] == list(range(1, steps + 1))

    interrupted = _model(0)
    with pytest.raises(KeyboardInterrupt):  # dies while loading the batch of step 3 (6 items read)
        trainer.train(interrupted, FailAfter(Shapes(), after=7, mode="interrupt"), settings,
                      checkpoint_dir=tmp_path / "b", **run)
    assert checkpoint.load_checkpoint(tmp_path / "b" / checkpoint.CHECKPOINT_NAME)["step"] == 2

    resumed = _model(1)  # a different init: everything must come from the checkpoint
    other = {**run, "repeat_factors": [1.0] * 4 if repeat_factors is None else None}
    with pytest.raises(ValueError, match="repeat factors: resume with the same"):
        trainer.train(_model(1), Shapes(), settings, checkpoint_dir=tmp_path / "b", resume=True, **other)
    history = trainer.train(resumed, Shapes(), settings, checkpoint_dir=tmp_path / "b", resume=True, **run)
    assert [r["step"] for r in history["loss"]] == list(range(steps))
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name



class NoisyShapes(Shapes):
    """Shapes with noise drawn from the global torch RNG at every load, as a random augmentation draws."""

    def __getitem__(self, index: int):
        image, target = super().__getitem__(index)
        return (image + 0.01 * torch.rand_like(image)).clamp(0, 1), target


def test_the_sample_prediction_leaves_the_training_random_streams_alone(tmp_path):
    """Logging a sample prediction after every step loads an item (random noise here) without moving the
    training's RNG: the same weights as a run that logs nothing."""
    weights = []
    for logged in ({}, {"log_dir": tmp_path / "tensorboard", "eval_every": 1}):
        model = _model(0)
        trainer.train(model, NoisyShapes(), _settings(steps=3), **logged, **RUN)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])

def test_nan_loss_stops_cleanly_and_keeps_last_checkpoint(tmp_path):
    model = _model(0)
    with pytest.raises(trainer.TrainingDiverged, match=r"step 3 .*last\.pt \(step 2\)"):
        trainer.train(model, FailAfter(Shapes(), after=6, mode="nan"), _settings(steps=6), checkpoint_dir=tmp_path, **RUN)
    state = checkpoint.load_checkpoint(tmp_path / checkpoint.CHECKPOINT_NAME)
    assert state["step"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert all(torch.isfinite(p).all() for p in model.parameters()), "weights were updated with a NaN loss"


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save_checkpoint({"step": 1}, path)

    def crash_midway(obj, f):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(trainer.torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_checkpoint({"step": 2}, path)
    assert checkpoint.load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_short_run_lowers_the_loss():
    model = _model(0)
    history = trainer.train(model, Shapes(), _settings(steps=24, lr=0.02, warmup_steps=4), **RUN)
    losses = [r["loss"] for r in history["loss"]]
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.6 * first, (first, last)


def test_lr_schedule_warms_up_then_decays():
    factor = lambda s, schedule: recipes.lr_factor(s, steps=100, warmup_steps=10, schedule=schedule)
    assert factor(0, "cosine") == pytest.approx(0.001)
    assert factor(10, "cosine") == pytest.approx(1.0)
    assert factor(55, "cosine") == pytest.approx(0.5)
    assert factor(99, "cosine") < 0.01
    assert [factor(s, "step") for s in (10, 65, 66, 88)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    assert [factor(s, "linear") for s in (0, 10, 55, 100)] == pytest.approx([0.001, 1.0, 0.5, 0.0])
    assert factor(30, "linear") < factor(30, "cosine") and factor(80, "linear") > factor(80, "cosine")
    with pytest.raises(ValueError, match="cosine, linear, step"):
        factor(20, "exponential")


def test_worker_processes_load_the_same_batches():
    in_process = list(trainer.batches(Shapes(), start=1, steps=3, batch_size=2, seed=0))
    in_workers = list(trainer.batches(Shapes(), start=1, steps=3, batch_size=2, seed=0, num_workers=1))
    assert len(in_process) == len(in_workers) == 2
    for batch_a, batch_b in zip(in_process, in_workers):
        for (image_a, target_a), (image_b, target_b) in zip(batch_a, batch_b):
            assert torch.equal(image_a, image_b) and torch.equal(target_a["boxes"], target_b["boxes"])


def test_cli_trains_toycity_and_resumes(tmp_path, capsys, monkeypatch):
    argv = ["--data", "toycity", "--length", "4", "--height", "64", "--width", "128", "--steps", "3",
            "--batch-size", "2", "--warmup", "1", "--checkpoint-every", "1", "--repeat-threshold", "0.5", "--out", str(tmp_path)]
    collate, calls = instances.batch_to_device, []

    def interrupted_at_step_2(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return collate(*args)

    monkeypatch.setattr(trainer, "batch_to_device", interrupted_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        train.cli(argv)
    state = checkpoint.load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 2 and state["repeat_factors"].shape == (4,) and state["repeat_factors"].min() >= 1
    assert any((tmp_path / "tensorboard").iterdir())
    monkeypatch.setattr(trainer, "batch_to_device", collate)
    assert train.cli(argv + ["--resume"]) == 0
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "history.json").is_file()
    state = checkpoint.load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 3 and [r["step"] for r in state["history"]["loss"]] == [0, 1, 2]
    assert "[results from]" in capsys.readouterr().out


def test_short_toycity_run_reaches_the_stated_ap():
    """200 AdamW steps on easy ToyCity scenes (two unoccluded cars, 64x128) give a usable detector.

    Stated bar: held-out mask AP50 >= 0.6 and box AP50 >= 0.6 (measured with the current model,
    whose mask head also reads the stem, at 1 thread: 1.00 and 1.00 after 200 steps, 0.56 and 0.59
    after 120; the model before the stem reached 0.93 and 0.93 after 120 steps, and with 64 RoIs
    per image in float32 0.66 and 0.67; SGD at lr 0.02 0.31 and 0.29; an untrained model 0).
    """
    from course_lib.data.toycity import HELD_OUT_SEED, ToyCityDataset
    from course_lib.evaluation.inference import inference_on_dataset
    from course_lib.evaluation.coco_eval import coco_metrics

    easy = dict(num_objects=2, occlusion=0.0, small_share=0.0, classes=["car"], height=H, width=W)
    model = _model(0)
    history = trainer.train(
        model, ToyCityDataset(400, seed=0, **easy),
        TrainSettings(steps=200, batch_size=2, lr=1e-3, optimizer="adamw", weight_decay=0.05, warmup_steps=10, seed=0),
        progress=False, device=torch.device("cpu"),
    )
    losses = [r["loss"] for r in history["loss"]]
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5])
    metrics = coco_metrics(*inference_on_dataset(model, ToyCityDataset(20, seed=HELD_OUT_SEED, **easy), device="cpu", batch_size=4))
    assert metrics["segm"]["AP50"] >= 0.6, metrics["segm"]
    assert metrics["bbox"]["AP50"] >= 0.6, metrics["bbox"]


def test_amp_setting_picks_the_dtype_and_the_cpu_default():
    from course_lib import environment

    assert recipes.amp_setting(None, torch.device("cuda")) == (True, torch.float16)
    assert recipes.amp_setting(False, torch.device("cpu")) == (False, torch.bfloat16)
    assert recipes.amp_setting(None, torch.device("cpu")) == (bool(environment.cpu_has_bf16_units()), torch.bfloat16)


@pytest.mark.parametrize("mask_weight", [0.0, 1.0])
def test_loss_weights_scale_a_loss_in_the_total(mask_weight):
    """With the mask loss weighted 0, SGD without weight decay leaves the mask logits layer (which
    only the mask loss reaches) exactly as initialised; with weight 1 it moves."""
    model = _model(0)
    logits = model.roi_heads.mask_predictor.mask_fcn_logits.weight
    before = logits.detach().clone()
    settings = _settings(steps=2, lr=0.001, optimizer="sgd", weight_decay=0.0, amp="off")
    trainer.train(model, Shapes(), settings, loss_weights={"loss_mask": mask_weight}, **RUN)
    assert torch.equal(logits, before) == (mask_weight == 0.0)


def test_collate_passes_the_int_image_id_of_real_datasets():
    """Cityscapes and COCO targets carry ``image_id`` as an int (course_lib.structures.instances.make_target)."""
    from course_lib.structures.instances import make_target

    masks = torch.zeros(1, 8, 8, dtype=torch.uint8)
    masks[0, 2:5, 2:6] = 1
    target = make_target(masks, torch.tensor([3]), torch.tensor([0]), image_id=7)
    images, targets = instances.batch_to_device([(torch.rand(3, 8, 8), target)], torch.device("cpu"))
    assert targets[0]["image_id"] == 7 and torch.equal(targets[0]["labels"], torch.tensor([3]))


def test_cli_seed_reproduces_the_first_loss(tmp_path):
    """``--seed`` seeds the model's initial weights too: two runs start from the same loss."""
    argv = ["--data", "toycity", "--length", "2", "--height", "64", "--width", "128", "--steps", "1",
            "--batch-size", "2", "--warmup", "1", "--seed", "3"]
    first_losses = []
    for run in ("a", "b"):
        torch.manual_seed(len(first_losses) + 100)  # whatever state the process is in before
        assert train.cli(argv + ["--out", str(tmp_path / run)]) == 0
        first_losses.append(json.loads((tmp_path / run / "history.json").read_text())["loss"][0]["loss"])
    assert first_losses[0] == first_losses[1]


def test_sample_prediction_image_draws_the_confident_instances():
    from course_lib.engine.trainer import _log_sample_prediction

    masks = torch.zeros(2, 1, 16, 24)
    masks[0, 0, 2:8, 2:8] = 0.9
    masks[1, 0, 9:14, 10:20] = 0.9
    prediction = {"boxes": torch.tensor([[2.0, 2, 8, 8], [10, 9, 20, 14]]), "labels": torch.tensor([1, 2]),
                  "scores": torch.tensor([0.9, 0.1]), "masks": masks}
    logged = {}

    class Writer:
        def add_image(self, tag, image, step):
            logged[tag] = image

    _log_sample_prediction(Writer(), lambda images: [prediction], torch.zeros(3, 16, 24), step=0)
    image = logged["sample_prediction"]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 24)
    assert image[:, 5, 5].any() and not image[:, 11, 15].any()  # the 0.1-score instance is not drawn


def test_default_learning_rates_follow_the_linear_scaling_rule():
    """The paper's SGD rate (0.02 for 16 images) scaled to the default batch, in the settings, which train()
    takes whole (it has no defaults of its own to drift apart)."""
    import inspect

    from course_lib.engine.recipes import RECIPES
    from course_lib.engine.settings import PAPER_BATCH, PAPER_LR

    finetune = RECIPES["finetune"]
    assert finetune["optimizer"] == "sgd"
    assert math.isclose(finetune["lr"], PAPER_LR * finetune["batch_size"] / PAPER_BATCH)
    assert not set(inspect.signature(trainer.train).parameters) & {field.name for field in dataclasses.fields(TrainSettings)}
