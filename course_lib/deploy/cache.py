"""Exported and calibrated models kept on disk between runs, so that a deployed run starts in a second.

Exporting the ToyCity model and calibrating it for INT8 takes tens of seconds, the same every time
for the same weights, input size, runtime and settings. :func:`cached_predictor` does it once and
keeps the result in :func:`course_lib.environment.export_cache_dir`, one folder per combination:
the folder's name is the sha256 of everything the export depends on (:func:`cache_key`), so a
change of any of them misses the cache. Each folder holds the exported files and ``entry.json``
(what the files were made from, and each file's sha256), written last: an entry whose record is
missing, does not match or whose files have changed is rebuilt, never loaded. Every file is
renamed into place once complete (:mod:`course_lib.utils.atomic`), so two runs at once, or a run
stopped half-way, leave either a whole entry or none. An OpenVINO entry also keeps, in its
``compiled`` subfolder, the model compiled for this CPU the first time it is loaded (OpenVINO's own
cache, which checks its files and compiles again when they do not load).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor
from torchvision.models.detection import MaskRCNN

from course_lib import environment
from course_lib.deploy import variants
from course_lib.deploy.predictor import RuntimePredictor
from course_lib.utils.atomic import write_json
from course_lib.utils.download import file_digest

ENTRY = "entry.json"
#: The entry's subfolder where OpenVINO keeps the model compiled for this CPU (it checks its own files).
COMPILED = "compiled"


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 of a model's weights: every state-dict entry's name, dtype, shape and bytes, in order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(model: MaskRCNN, variant: variants.DeployVariant, size: tuple[int, int], calibration: int) -> dict:
    """Everything an export of ``model`` as ``variant`` for ``size`` (``(H, W)``) images depends on."""
    return {"weights_sha256": weights_sha256(model), "size": list(size), "runtime": variant.runtime,
            "settings": dataclasses.asdict(variant.settings), "int8_scope": variant.int8_scope,
            "calibration_images": calibration if variant.runtime.startswith("ov_int8") else 0,
            "transform": repr(model.transform), "versions": _versions()}


def _versions() -> dict[str, str]:
    """The versions of what writes an export: a new one may write it differently (read from the installed
    packages' metadata: importing NNCF and ONNX to ask them would take longer than loading a cached export)."""
    return {package: importlib.metadata.version(package) for package in ("torch", "torchvision", "onnx", "openvino", "nncf")}


def _entry_folder(root: Path, key: dict) -> Path:
    return root / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _valid_files(folder: Path, key: dict) -> list[Path] | None:
    """The entry's exported files if its record matches ``key`` and every file its sha256, else None."""
    try:
        record = json.loads((folder / ENTRY).read_text())
        if record["key"] != key:
            return None
        files = [folder / name for name in record["files"]]
        return files if all(file_digest(f) == record["files"][f.name] for f in files) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def cached_predictor(model: MaskRCNN, variant: variants.DeployVariant, size: tuple[int, int],
                     calibration: Callable[[int], Sequence[Tensor]], calibration_images: int,
                     root: Path | None = None) -> tuple[RuntimePredictor, bool]:
    """``(predictor, hit)``: ``model`` exported as ``variant`` for ``size`` images, from the cache when a
    valid entry is there (``hit``), else built (:func:`course_lib.deploy.variants.build`) and stored.

    ``calibration(n)`` gives ``n`` calibration images at ``size``; it is called only on a miss.
    """
    root = Path(root or environment.export_cache_dir())
    key = cache_key(model, variant, size, calibration_images)
    folder = _entry_folder(root, key)
    files = _valid_files(folder, key)
    if files is not None:
        return variants.load(files[0], compiled_cache=folder / COMPILED), True
    folder.mkdir(parents=True, exist_ok=True)
    images = calibration(calibration_images) if variant.runtime.startswith("ov_int8") else []
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build.") as build:
        predictor, path = variants.build(model, variant, *size, images, build)
        built = [path] + ([path.with_suffix(".bin")] if path.suffix == ".xml" else [])
        record = {"key": key, "files": {}}
        for source in reversed(built):  # an IR's weights first: its .xml names them
            os.replace(source, folder / source.name)
            record["files"][source.name] = file_digest(folder / source.name)
    record["files"] = dict(reversed(record["files"].items()))  # the loadable file first
    write_json(folder / ENTRY, record)
    return predictor, False
