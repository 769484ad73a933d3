"""Format-faithful stand-ins for what a learner has on Colab: made offline, placed where the real ones go.

* :func:`coco_state_dict` / :func:`install_coco_weights`: a state dict with the keys and shapes of
  torchvision's ``maskrcnn_resnet50_fpn`` COCO file (91 slots), under its official file name in a
  torch hub cache. Its classifier is crafted: every proposal is a confident COCO "person".
* :func:`export_cityscapes`: ToyCity scenes in the Cityscapes layout (``leftImg8bit/``,
  ``gtFine/`` with ``*_instanceIds.png``, group regions, an evaluation-ignored class).
* :func:`export_coco`: ToyCity scenes as a COCO instances file plus images, under the paths that
  ``data_scripts/download_coco.py`` writes.
* :func:`serve_offline`: the server for a download script: URLs answered from local files.

The product checks the sha256 of the COCO file against torchvision's published prefix; the stand-in
cannot match it, so tests replace the expected prefix (:func:`trust_coco_file`, or
:data:`TRUST_COCO_CELL` in a notebook), never the check itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels

#: COCO category id of "person" (torchvision's COCO models index their 91 slots by category id).
PERSON_SLOT = 1


def coco_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A ``maskrcnn_resnet50_fpn`` COCO-format state dict whose classifier says "person" for every
    proposal (weights 0, bias +10 on COCO id 1 and -10 elsewhere) and whose box deltas are 0."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(seed)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    state = model.state_dict()
    state["roi_heads.box_predictor.cls_score.weight"].zero_()
    state["roi_heads.box_predictor.cls_score.bias"].fill_(-10.0)[PERSON_SLOT] = 10.0
    state["roi_heads.box_predictor.bbox_pred.weight"].zero_()
    state["roi_heads.box_predictor.bbox_pred.bias"].zero_()
    return state


def install_coco_weights(torch_home: Path) -> Path:
    """Write :func:`coco_state_dict` to ``torch_home``'s hub cache under torchvision's official name."""
    from course_lib.zoo import registry

    path = Path(torch_home) / "hub" / "checkpoints" / Path(registry.COCO_WEIGHTS.url).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(coco_state_dict(), path)
    return path


def trust_coco_file(monkeypatch, path: Path) -> None:
    """Make ``course_lib.zoo.registry`` expect the stand-in's sha256 prefix instead of torchvision's (the check stays)."""
    from course_lib.utils.download import file_digest
    from course_lib.zoo import registry

    prefix = file_digest(path)[:8]
    monkeypatch.setattr(registry, "_coco_hash_prefix", lambda: prefix)


#: The same as :func:`trust_coco_file`, as a notebook cell run before a chapter's own cells.
TRUST_COCO_CELL = """\
from course_lib.utils.download import file_digest as _file_digest
from course_lib.zoo import registry as _registry
_prefix = _file_digest(_registry._coco_file())[:8]
_registry._coco_hash_prefix = lambda: _prefix
"""


def toycity_scenes(first_seed: int, count: int, height: int, width: int, semantic: bool):
    from course_lib.data.toycity import scene

    return (scene(seed, height, width, semantic=semantic) for seed in range(first_seed, first_seed + count))


def export_cityscapes(root: Path, count: int = 2, height: int = 128, width: int = 256) -> Path:
    """ToyCity in the Cityscapes layout: ``train`` and ``val`` splits of ``count`` scenes each, with
    the small instances turned into group regions. Returns ``root`` (for ``CITYSCAPES_DATASET``)."""
    from course_lib.data.toycity import HELD_OUT_SEED
    from course_lib.data.toycity.export import write_cityscapes

    for split, first in (("train", 0), ("val", HELD_OUT_SEED)):
        write_cityscapes(root, split, toycity_scenes(first, count, height, width, semantic=True), group_area=150)
        for ids_file in sorted((Path(root) / "gtFine" / split).glob("*/*_instanceIds.png")):
            add_caravan(ids_file)
    return Path(root)


def add_caravan(ids_file: Path) -> None:
    """Paint a caravan instance (a class the official evaluation ignores) into the top-left corner
    of an ``*_instanceIds.png`` and its ``*_labelIds.png``."""
    import cv2

    from course_lib.data.cityscapes import read_instance_ids

    caravan = next(label.id for label in labels if label.name == "caravan")
    labels_file = ids_file.with_name(ids_file.name.replace("_instanceIds", "_labelIds"))
    ids, label_ids = read_instance_ids(ids_file).astype(np.uint16), cv2.imread(str(labels_file), cv2.IMREAD_UNCHANGED)
    ids[:12, :20], label_ids[:12, :20] = caravan * 1000, caravan
    cv2.imwrite(str(ids_file), ids)
    cv2.imwrite(str(labels_file), label_ids)


def export_coco(root: Path, split: str = "val2017", count: int = 2, height: int = 128, width: int = 256) -> Path:
    """ToyCity as COCO: ``root/annotations/instances_{split}.json``, its person + vehicle subset
    ``urban_{split}.json`` and ``root/{split}/*.png`` (the files ``data_scripts/download_coco.py``
    writes). Returns ``root``."""
    import json

    from course_lib.data.coco_urban import coco_urban_subset
    from course_lib.data.toycity.export import write_coco

    instances = write_coco(root, split, toycity_scenes(2_000_000, count, height, width, semantic=False))
    subset = coco_urban_subset(json.loads(Path(instances).read_text()))
    (Path(root) / "annotations" / f"urban_{split}.json").write_text(json.dumps(subset))
    return Path(root)


def cityscapes_ids(root: Path, split: str) -> np.ndarray:
    """All id values in the split's ``*_instanceIds.png`` files (to check what the export holds)."""
    from course_lib.data.cityscapes import read_instance_ids

    files = sorted((Path(root) / "gtFine" / split).glob("*/*_instanceIds.png"))
    return np.unique(np.concatenate([np.unique(read_instance_ids(f)) for f in files]))


def serve_offline(monkeypatch, script, served: dict[str, Path]) -> list[str]:
    """Replace ``script.download`` (a data script's :func:`course_lib.utils.download.download`) by one
    that answers each URL of ``served`` with that file's bytes and any other URL with the
    ``ConnectionError`` of an unreachable server; like the real one it keeps an existing destination.
    Returns the list of the URLs asked for, in order."""
    import shutil

    asked: list[str] = []

    def download(url: str, dest, **kwargs) -> Path:
        asked.append(url)
        dest = Path(dest)
        if not dest.exists():
            if url not in served:
                raise ConnectionError(f"cannot reach {url}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(served[url], dest)
        return dest

    monkeypatch.setattr(script, "download", download)
    return asked
