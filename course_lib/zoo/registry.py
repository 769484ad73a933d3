"""The one place that knows where model weights come from: ``course_lib.zoo.load(name, **options)``.

Entries:

* ``"coco"`` - torchvision's official COCO-trained Mask R-CNN R50-FPN (91 COCO category slots).
  ``load("coco", urban=True)`` reads it in the course's 9 classes for inference, keeping COCO's
  scores (``course_lib.modeling.coco_heads.coco_zero_shot``: no rider, a class COCO never learned).
  Weights are cached in torch's hub folder (``torch.hub.get_dir()``) and downloaded where there is
  internet; offline, loading raises :class:`WeightsUnavailable` with one line that says what to do.
* ``"toycity"`` - the small Mask R-CNN trained on ToyCity by ``data_scripts/train_toycity.py``;
  its checkpoint and manifest ship inside the package (``course_lib/assets``), so it works offline.
* ``"detectron2:<name>"`` - a Mask R-CNN from Detectron2's model zoo converted to torchvision, e.g.
  ``load("detectron2:Cityscapes/mask_rcnn_R_50_FPN")`` (see ``course_lib.zoo.detectron2_weights``).
* ``"checkpoint"`` - your own checkpoint: ``load("checkpoint", source=URL_OR_PATH, sha256=...,
  arch="r50_fpn", num_classes=9)``. A URL is downloaded once into the hub cache and verified.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
import torchvision
from torch import nn

from course_lib import environment
from course_lib.engine.checkpoint import load_checkpoint
from course_lib.errors import UnreadableCheckpoint, WeightsUnavailable
from course_lib.modeling import coco_heads, maskrcnn
from course_lib.zoo import detectron2_weights
from course_lib.utils.download import check_sha256, checksum_error
from course_lib.zoo.files import fetch, reachable, weights_dir

TOYCITY_MANIFEST = "toycity_maskrcnn.json"


# --- "coco": torchvision's official weights ----------------------------------------------------

COCO_WEIGHTS = torchvision.models.detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1


def _coco_file() -> Path:
    return weights_dir() / Path(COCO_WEIGHTS.url).name


def _coco_hash_prefix() -> str:
    # torchvision's convention: "<name>-<first 8 hex digits of sha256>.pth"
    return Path(COCO_WEIGHTS.url).stem.rsplit("-", 1)[-1]


#: With ``COURSE_FAST=1`` (tests, CI) the COCO model runs smaller, with fewer proposals and detections,
#: so a chapter runs in seconds on a CPU; a learner gets torchvision's defaults (800 x 1333, 1000
#: proposals, 100 detections).
FAST_COCO_OPTIONS = {"min_size": 256, "max_size": 512, "rpn_pre_nms_top_n_test": 500, "rpn_post_nms_top_n_test": 300,
                     "box_detections_per_img": 20}


def _load_coco(urban: bool = False, progress: bool = True, **build_options: Any) -> nn.Module:
    build_options = {**environment.pick(FAST_COCO_OPTIONS, {}), **build_options}
    path = fetch(COCO_WEIGHTS.url, _coco_hash_prefix(), progress=progress)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=len(COCO_WEIGHTS.meta["categories"]), **build_options
    )
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if urban:
        model = coco_heads.coco_zero_shot(model)
    return model


# --- "toycity": the course's own offline model ---------------------------------------------------


def toycity_manifest() -> dict:
    """The manifest of the shipped ToyCity checkpoint: file, sha256, arch, build options, command, metrics."""
    manifest = resources.files("course_lib") / "assets" / TOYCITY_MANIFEST
    if not manifest.is_file():
        raise WeightsUnavailable(
            "the ToyCity checkpoint is not in this copy of course_lib (course_lib/assets/"
            f"{TOYCITY_MANIFEST} is missing): train it with the shipped recipe, "
            "`python data_scripts/train_toycity.py --repeat-threshold 0.44 --steps 1650`"
        )
    return json.loads(manifest.read_text())


def _toycity_file(manifest: dict) -> Path:
    shipped = resources.files("course_lib") / "assets" / manifest["file"]
    if shipped.is_file():
        return Path(str(shipped))
    if manifest.get("url"):
        return fetch(manifest["url"], manifest["sha256"], filename=manifest["file"])
    raise WeightsUnavailable(
        f"course_lib/assets/{manifest['file']} is missing: reinstall course_lib, or retrain it "
        f"with `{manifest['command']}` (the manifest's command)"
    )


def _build_from_file(path: Path, arch: str, build_kwargs: dict) -> nn.Module:
    """Build ``arch`` and load a bare state dict or a training checkpoint's ``"model"`` entry
    (:func:`course_lib.engine.checkpoint.load_checkpoint`: a file that carries code is refused)."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.get("model", state).values()):
        raise UnreadableCheckpoint(f"{path} holds no state dict (name -> tensor): give a run's last.pt or model.pt, "
                                   "or a file saved with torch.save(model.state_dict(), ...)")
    model = maskrcnn.build(arch, **build_kwargs)
    try:
        model.load_state_dict(state.get("model", state))
    except RuntimeError as error:  # missing, unexpected or differently shaped tensors
        first = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), str(error))
        raise UnreadableCheckpoint(f"{path} does not fit architecture {arch} with {model.roi_heads.box_predictor.cls_score.out_features} "
                                   f"classes ({first[:160]}): give the --arch it was trained with") from None
    return model


def _load_checkpoint_file(path: Path, sha256: str, arch: str, build_kwargs: dict) -> nn.Module:
    if checksum_error(path, check_sha256(sha256)) is not None:
        raise WeightsUnavailable(f"{path} does not match its sha256 {sha256}: the file is corrupt or was replaced")
    return _build_from_file(path, arch, build_kwargs)


def _load_toycity(**build_options: Any) -> nn.Module:
    manifest = toycity_manifest()
    build_kwargs = {**manifest.get("build_kwargs", {}), **build_options}
    return _load_checkpoint_file(_toycity_file(manifest), manifest["sha256"], manifest["arch"], build_kwargs)


# --- "checkpoint": a learner's own weights -------------------------------------------------------


def _load_user_checkpoint(source: str, sha256: str, arch: str = "r50_fpn", **build_kwargs: Any) -> nn.Module:
    if source.startswith(("http://", "https://")):
        path = fetch(source, sha256)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"no checkpoint file at {path}: check the path")
    return _load_checkpoint_file(path, sha256, arch, build_kwargs)


LOADERS: dict[str, Callable[..., nn.Module]] = {
    "coco": _load_coco,
    "toycity": _load_toycity,
    "checkpoint": _load_user_checkpoint,
}


def _load_detectron2(entry: str, **options: Any) -> nn.Module:
    return detectron2_weights.load(entry, **options)


#: ``"prefix:entry"`` names, e.g. ``"detectron2:Cityscapes/mask_rcnn_R_50_FPN"`` (see course_lib.zoo.detectron2_weights).
PREFIX_LOADERS: dict[str, Callable[..., nn.Module]] = {"detectron2": _load_detectron2}


def load(name: str, device: torch.device | str | None = None, **options: Any) -> nn.Module:
    """Return a ready model (eval mode, on ``device`` or :func:`course_lib.environment.device`)."""
    prefix, _, entry = name.partition(":")
    if entry and prefix in PREFIX_LOADERS:
        model = PREFIX_LOADERS[prefix](entry, **options)
    elif name in LOADERS:
        model = LOADERS[name](**options)
    else:
        raise ValueError(f"unknown model {name!r}: choose one of {sorted(LOADERS)} or 'detectron2:<model-zoo name>'")
    return model.eval().to(device or environment.device())


def from_command_line(source: str, arch: str = "toycity_small", device: torch.device | str | None = None) -> nn.Module:
    """The model a ``--model`` option names: ``toycity``, ``coco`` (mapped to the urban classes),
    ``detectron2:<name>`` of an entry in the course's classes (the Cityscapes one), or
    the path of a checkpoint written by ``python -m course_lib train`` for architecture ``arch``.

    The file is loaded with ``weights_only=True`` (nothing in it can run code); a file shared by
    others is better loaded with ``load("checkpoint", sha256=...)``, which also checks its hash.
    Weights with a manifest beside them (``NAME.json``, as ``data_scripts/train_toycity.py``
    writes) are built from its ``arch`` and ``build_kwargs`` and checked against its sha256.
    """
    if source in ("toycity", "coco"):
        return load(source, device=device, **({"urban": True} if source == "coco" else {}))
    if source.startswith("detectron2:"):
        detectron2_weights.check_course_classes(source.partition(":")[2])
        return load(source, device=device)
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"--model {source}: expected 'toycity', 'coco', 'detectron2:<model-zoo name>' or the path of a checkpoint file")
    if path.suffix == ".json":
        raise UnreadableCheckpoint(f"--model {source} is a JSON file (a manifest or results), not weights: give the "
                                   "checkpoint file (.pt) itself")
    manifest_path = path.with_suffix(".json")
    if manifest_path.is_file():
        manifest = _read_manifest(manifest_path)
        model = _load_checkpoint_file(path, manifest["sha256"], manifest["arch"], manifest.get("build_kwargs", {}))
    else:
        model = _build_from_file(path, arch, {})
    return model.eval().to(device or environment.device())


def _read_manifest(path: Path) -> dict:
    """A weights file's manifest (``sha256``, ``arch``, ``build_kwargs``), refused in one line if it lacks them."""
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UnreadableCheckpoint(f"{path} is not a JSON manifest ({error}): move it away to load the weights beside it "
                                   "without one") from None
    missing = [key for key in ("sha256", "arch") if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise UnreadableCheckpoint(f"{path} is not a weights manifest (no {', '.join(missing)}): move it away to load the "
                                   "weights beside it without one")
    return manifest


def status(name: str) -> str:
    """One of ``"cached"``, ``"downloadable"``, ``"unavailable"`` (``"shipped"`` for ToyCity)."""
    if name.startswith("detectron2:"):
        return detectron2_weights.status(name.partition(":")[2])
    if name == "coco":
        if _coco_file().exists():
            return "cached"
        return "downloadable" if reachable(COCO_WEIGHTS.url) else "unavailable"
    if name == "toycity":
        try:
            manifest = toycity_manifest()
        except WeightsUnavailable:
            return "unavailable"
        return "shipped" if (resources.files("course_lib") / "assets" / manifest["file"]).is_file() else "unavailable"
    raise ValueError(f"status is defined for 'coco', 'toycity' and 'detectron2:<model-zoo name>', not {name!r}")


def available(name: str) -> bool:
    """True when :func:`load` can return ``name`` now (cached, shipped or downloadable)."""
    return status(name) != "unavailable"


def course_model(prefer_coco: bool | None = None) -> tuple[nn.Module, str]:
    """The model a chapter inspects, and its name for the banner.

    COCO weights mapped to the urban classes where they can be had (``COURSE_OFFLINE=1`` forbids
    them), else the ToyCity model, which always works offline.
    """
    if prefer_coco is None:
        prefer_coco = not environment.offline()
    if prefer_coco and available("coco"):
        return load("coco", urban=True), "COCO-pretrained Mask R-CNN R50-FPN (mapped to urban classes)"
    return load("toycity"), "ToyCity model (trained offline by this course)"
