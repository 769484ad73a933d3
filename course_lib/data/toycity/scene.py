"""One ToyCity image and its exact ground truth: compositing actors far to near.

Each actor's patch is pasted in depth order (far first), writing its colour and its index into
an instance-id map. An actor's *amodal* mask is everything it painted (inside the frame); its
*visible* mask is where its index survived in the id map. Because every pixel holds one index,
visible masks are disjoint by construction, and occlusion is exact:

    occlusion = 1 - |visible| / |amodal|.

Leaving the frame is truncation, not occlusion: both masks are clipped to the image first.

Box convention (stated once, used by every exporter): ``boxes`` are XYXY in pixel-edge
coordinates, ``x2 = last mask column + 1``, so a box spans exactly the mask's pixels, a one-pixel
object has width 1 (torchvision rejects zero-width boxes in training), and the COCO box
``[x1, y1, x2 - x1, y2 - y1]`` equals ``pycocotools.mask.toBbox`` of the mask.
``torchvision.ops.masks_to_boxes`` returns the last column itself; add 1 to x2 and y2.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from cityscapesscripts.helpers.labels import id2label

from course_lib.classes import CLASS_TO_INDEX

from .background import draw_background
from .draw import LABEL_ID, draw_actor
from .world import CLASS_WEIGHTS, Actor, Street, populate, sample_camera, sample_street

#: Objects whose visible area is smaller than this (pixels) are dropped from the ground truth.
MIN_VISIBLE_AREA = 20
#: Objects hidden by more than this fraction of their (in-frame) amodal area are dropped.
MAX_OCCLUSION = 0.9


def check_options(height: int, width: int, num_objects: int | None, occlusion: float, small_share: float,
                  classes) -> tuple[str, ...]:
    """Validate scene options; return the classes to draw as a tuple of names."""
    if height < 64 or width < 64:
        raise ValueError(f"ToyCity images must be at least 64x64 pixels, got height={height}, width={width}.")
    if num_objects is not None and num_objects < 0:
        raise ValueError(f"num_objects must be >= 0 (or None for a random 5..14), got {num_objects}.")
    for name, value in (("occlusion", occlusion), ("small_share", small_share)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} is a probability in [0, 1], got {value}.")
    classes = tuple(CLASS_WEIGHTS) if classes is None else (classes,) if isinstance(classes, str) else tuple(classes)
    unknown = [c for c in classes if c not in CLASS_WEIGHTS]
    if unknown or not classes:
        raise ValueError(f"classes must be a non-empty subset of {list(CLASS_WEIGHTS)}, got {list(classes)}.")
    return classes


@dataclass
class Rendering:
    """What :func:`render` produces; ``layers`` lists every painted actor, far to near."""

    image: np.ndarray  # uint8 [H, W, 3]
    label_ids: np.ndarray  # uint8 [H, W] Cityscapes label id of every pixel
    target: dict[str, torch.Tensor]
    kept: list[Actor]  # the labelled actors in the target, in target order
    layers: list[tuple[Actor, tuple[slice, slice], np.ndarray]]  # (actor, region, amodal mask in region)


def render(street: Street, actors: list[Actor], background: tuple[np.ndarray, np.ndarray], image_id: int) -> Rendering:
    """Composite ``actors`` onto ``background`` (image, label ids), far to near, and derive the target.

    target: ``boxes`` [N, 4] float32, ``labels`` [N] int64, ``masks`` and ``amodal_masks`` uint8
    [N, H, W], ``occlusion``/``area``/``depth`` [N] float32, ``iscrowd`` [N] int64, ``image_id``
    int64 scalar. Objects dropped from the target keep their class id in ``label_ids``.
    """
    image, label_ids = background[0].copy(), background[1].copy()
    H, W = image.shape[:2]
    ids = np.zeros((H, W), np.int32)  # 0 = background or stuff, k = the k-th layer
    layers = []
    for actor in sorted(actors, key=lambda a: -a.z):
        patch = draw_actor(actor, street.camera)
        mask = patch.mask.astype(bool)
        if not mask.any():
            continue
        h, w = mask.shape
        region = (slice(patch.top, patch.top + h), slice(patch.left, patch.left + w))
        np.copyto(image[region], patch.rgb, where=mask[:, :, None])
        layers.append((actor, region, mask))
        ids[region][mask] = len(layers)
        label_ids[region][mask] = LABEL_ID[actor.kind]

    kept, visible_masks, amodal_masks = [], [], []
    for index, (actor, region, amodal) in enumerate(layers, start=1):
        if not actor.labelled:
            continue
        visible = ids[region] == index
        visible_area, amodal_area = int(visible.sum()), int(amodal.sum())
        if visible_area < MIN_VISIBLE_AREA or 1 - visible_area / amodal_area > MAX_OCCLUSION:
            continue
        kept.append(actor)
        visible_masks.append((region, visible))
        amodal_masks.append((region, amodal))
    target = scene_target(kept, visible_masks, amodal_masks, (H, W), image_id)
    return Rendering(image, label_ids, target, kept, layers)


def outline(mask: np.ndarray, offset: tuple[int, int]) -> list[list[int]]:
    """The outer contour of a binary mask's largest part, as [[x, y], ...] image pixels (shifted by ``offset``)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    largest = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    return (largest[:, 0, :] + np.asarray(offset)).tolist()


def paint_outlines(background_labels: np.ndarray, rendering: Rendering) -> list[dict]:
    """Cityscapes-style polygons in paint order: background stuff first, then every actor far to near.

    Like Cityscapes' annotators, each object is outlined whole (amodal) and nearer outlines
    overwrite farther ones, so filling the polygons in order gives back the label map. Each
    entry: ``label`` (a cityscapesscripts label name; ``<class>group`` for objects not in the
    target), ``instance`` (index into the target, or -1) and ``polygon``.
    """
    polygons = []
    for name in ("sky", "building", "road", "sidewalk"):
        parts, _ = cv2.findContours((background_labels == LABEL_ID[name]).astype(np.uint8), cv2.RETR_EXTERNAL,
                                    cv2.CHAIN_APPROX_SIMPLE)
        polygons += [{"label": name, "instance": -1, "polygon": part[:, 0, :].tolist()} for part in parts]
    instance_of = {id(actor): i for i, actor in enumerate(rendering.kept)}
    for actor, region, amodal in rendering.layers:
        name = id2label[LABEL_ID[actor.kind]].name
        instance = instance_of.get(id(actor), -1)
        if instance < 0 and id2label[LABEL_ID[actor.kind]].hasInstances:
            name += "group"  # dropped or unrequested objects: a class region without an instance
        polygons.append({"label": name, "instance": instance,
                         "polygon": outline(amodal, (region[1].start, region[0].start))})
    return polygons


def box_of(region: tuple[slice, slice], mask: np.ndarray) -> list[int]:
    """Pixel-edge XYXY box (see module doc) of a non-empty ``mask`` lying at ``region`` in the image."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, x0 = region[0].start, region[1].start
    return [x0 + cols[0], y0 + rows[0], x0 + cols[-1] + 1, y0 + rows[-1] + 1]


def scene_target(actors, visible_masks, amodal_masks, size: tuple[int, int], image_id: int) -> dict[str, torch.Tensor]:
    """Full-size mask tensors and the derived boxes, areas and occlusion fractions."""
    n = len(actors)
    masks = np.zeros((n, *size), np.uint8)
    amodal = np.zeros((n, *size), np.uint8)
    for i, ((region, vis), (_, amo)) in enumerate(zip(visible_masks, amodal_masks)):
        masks[i][region] = vis
        amodal[i][region] = amo
    masks_t, amodal_t = torch.from_numpy(masks), torch.from_numpy(amodal)
    boxes = torch.tensor([box_of(region, vis) for region, vis in visible_masks], dtype=torch.float32).reshape(n, 4)
    area = torch.tensor([float(vis.sum()) for _, vis in visible_masks], dtype=torch.float32)
    amodal_area = torch.tensor([float(amo.sum()) for _, amo in amodal_masks], dtype=torch.float32)
    return {
        "boxes": boxes,
        "labels": torch.tensor([CLASS_TO_INDEX[a.kind] for a in actors], dtype=torch.int64),
        "masks": masks_t,
        "amodal_masks": amodal_t,
        "occlusion": 1 - area / amodal_area,  # every kept actor painted at least MIN_VISIBLE_AREA pixels
        "area": area,
        "iscrowd": torch.zeros(n, dtype=torch.int64),
        "depth": torch.tensor([a.z for a in actors], dtype=torch.float32),
        "image_id": torch.tensor(image_id, dtype=torch.int64),
    }


def sample_exposure(rng: np.random.Generator) -> np.ndarray:
    """Per-channel gains [3]: the scene's overall brightness and colour cast."""
    return rng.uniform(0.75, 1.2) * rng.uniform(0.9, 1.1, 3)


def finish(rng: np.random.Generator, image: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Camera effects: exposure and colour cast, slight blur, fresh sensor noise from ``rng``."""
    table = np.clip(np.arange(256)[:, None] * exposure[None, :], 0, 255).astype(np.uint8)
    out = cv2.LUT(image, table.reshape(256, 1, 3))  # a per-channel lookup table
    out = cv2.GaussianBlur(out, (3, 3), 0.6)
    noise = rng.integers(-6, 7, size=out.shape[:2], dtype=np.int16)[..., None]
    return np.clip(out.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def scene(
    seed: int,
    height: int = 512,
    width: int = 1024,
    *,
    num_objects: int | None = None,
    occlusion: float = 0.5,
    small_share: float = 0.3,
    classes=None,
    semantic: bool = False,
) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
    """A random street scene and its exact instance ground truth; the same ``seed`` gives the same scene.

    Returns ``image`` uint8 [H, W, 3] RGB and a torchvision-style ``target`` (see :func:`render`).
    ``num_objects`` (default: 5..14) is how many objects are placed before hidden ones are
    dropped; ``occlusion`` and ``small_share`` are probabilities (see ``world.populate``);
    ``classes`` restricts the classes placed (names from ``course_lib.classes.CLASSES``).
    ``target['depth']`` is each object's distance from the camera in metres.
    ``semantic=True`` adds what the Cityscapes exporter needs: ``target['semantic']``, uint8
    [H, W] Cityscapes label ids of every pixel (sky, building, road, ... and the objects'
    classes), and ``target['outlines']``, the polygons of :func:`paint_outlines`.
    """
    classes = check_options(height, width, num_objects, occlusion, small_share, classes)
    rng = np.random.default_rng(seed)
    street = sample_street(rng, sample_camera(rng, height, width))
    count = int(rng.integers(5, 15)) if num_objects is None else int(num_objects)
    actors = populate(rng, street, count, classes, occlusion, small_share)
    background = draw_background(rng, street)
    rendering = render(street, actors, background, image_id=seed)
    if semantic:
        add_semantic(rendering, background[1])
    return finish(rng, rendering.image, sample_exposure(rng)), rendering.target


def add_semantic(rendering: Rendering, background_labels: np.ndarray) -> None:
    """Put ``semantic`` and ``outlines`` into the rendering's target (see :func:`scene`)."""
    rendering.target["semantic"] = torch.from_numpy(rendering.label_ids)
    rendering.target["outlines"] = paint_outlines(background_labels, rendering)
