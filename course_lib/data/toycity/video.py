"""ToyCity clips: one street seen by a fixed camera while traffic moves, with track ids.

Vehicles in one lane (and riders in one bike lane) share the lane's speed, so they queue but
never drive through each other; pedestrians walk along the sidewalks at their own pace or cross
the road on the zebra crossing and then walk on. New actors enter at the image edge their band
flows from, at a fixed rate per band, and actors are removed once they are out of view. Track
ids are given once per labelled actor and never reused; a track whose object is hidden past
``MAX_OCCLUSION`` disappears from those frames and comes back with the same id.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .background import draw_background
from .scene import add_semantic, check_options, finish, render, sample_exposure
from .world import (
    VEHICLES,
    Actor,
    Street,
    band_depth,
    in_traffic,
    make_actors,
    overlaps,
    populate,
    sample_camera,
    sample_look,
    sample_street,
)

#: New actors per second entering each band (a lane, a bike lane, a sidewalk).
SPAWN_RATE = {"lane": 0.5, "bike": 0.15, "near": 0.4, "far": 0.4}
STRIDE = 1.4  # metres walked per full leg cycle
CRANK = 4.0  # metres ridden per pedal turn


def band_speeds(rng: np.random.Generator, street: Street) -> dict[str, float]:
    """One speed (m/s) per traffic band: cars 5-9 m/s, bicycles 3-5.5 m/s."""
    speeds = {f"lane{i}": rng.uniform(5.0, 9.0) for i in range(len(street.lanes))}
    speeds.update({f"bike{i}": rng.uniform(3.0, 5.5) for i in (0, len(street.lanes) - 1)})
    return speeds


def move(actors: list[Actor], street: Street, dt: float) -> None:
    """Advance every actor by ``dt`` seconds, in place; pedestrians who have crossed walk on."""
    for actor in actors:
        actor.x += actor.direction * actor.speed * dt
        actor.z += actor.vz * dt
        distance = (abs(actor.speed) + abs(actor.vz)) * dt
        actor.phase += 2 * math.pi * distance / (STRIDE if actor.kind == "person" else CRANK)
        if actor.band == "crossing" and not street.road[0] - 0.5 < actor.z < street.road[1] + 0.5:
            actor.band = "near" if actor.z < street.road[0] else "far"
            actor.speed, actor.vz = abs(actor.vz), 0.0


def in_view(actor: Actor, street: Street) -> bool:
    """False once an actor has driven or walked out of the image (parked ones stay)."""
    lo, hi = street.camera.x_range(actor.z)
    margin = actor.length / 2 + 0.5
    return lo - margin < actor.x < hi + margin or actor.speed == 0.0


def spawn(
    rng: np.random.Generator, street: Street, actors: list[Actor], classes: tuple[str, ...],
    speeds: dict[str, float], dt: float,
) -> list[Actor]:
    """New actors entering the view this frame, one per band at most, at the edge they flow from."""
    kinds = {
        "lane": [k for k in VEHICLES if k in classes],
        "bike": ["rider"] if "rider" in classes else [],
        "near": ["person"] if "person" in classes else [],
        "far": ["person"] if "person" in classes else [],
    }
    bands = [f"lane{i}" for i in range(len(street.lanes))] + ["bike0", f"bike{len(street.lanes) - 1}", "near", "far"]
    new = []
    for band in bands:
        family = band.rstrip("0123456789")
        if not kinds[family] or rng.random() >= SPAWN_RATE[family] * dt:
            continue
        kind = str(rng.choice(kinds[family]))
        look = sample_look(rng, kind)
        z, direction = band_depth(rng, street, band, kind)
        lo, hi = street.camera.x_range(z)
        x = lo - look["length"] / 2 if direction > 0 else hi + look["length"] / 2
        if in_traffic(band) and overlaps(x, look["length"], [(a.x, a.length) for a in actors if a.band == band]):
            continue  # the queue reaches the edge: no room to enter
        for actor in make_actors(rng, kind, x, z, direction, band, look, classes):
            actor.speed = speeds.get(band, actor.speed)
            new.append(actor)
    return new


def number_tracks(actors: list[Actor], next_id: int) -> int:
    """Give each labelled actor without a track id the next free id; return the next free id."""
    for actor in actors:
        if actor.labelled and actor.track_id == 0:
            actor.track_id = next_id
            next_id += 1
    return next_id


def clip(
    seed: int,
    num_frames: int,
    height: int = 512,
    width: int = 1024,
    *,
    fps: float = 10.0,
    num_objects: int | None = None,
    occlusion: float = 0.5,
    small_share: float = 0.3,
    classes=None,
    semantic: bool = False,
) -> list[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """``num_frames`` frames of one street at ``fps``; each target also holds ``track_ids`` int64 [N].

    Frame ``t``'s target is as in :func:`course_lib.data.toycity.scene` with ``image_id = t``; the
    other options (``semantic`` included) mean what they mean there and describe the first frame.
    """
    classes = check_options(height, width, num_objects, occlusion, small_share, classes)
    if num_frames < 1 or fps <= 0:
        raise ValueError(f"need num_frames >= 1 and fps > 0, got num_frames={num_frames}, fps={fps}.")
    rng = np.random.default_rng(seed)
    street = sample_street(rng, sample_camera(rng, height, width))
    count = int(rng.integers(5, 15)) if num_objects is None else int(num_objects)
    actors = populate(rng, street, count, classes, occlusion, small_share)
    speeds = band_speeds(rng, street)
    for actor in actors:
        actor.speed = speeds.get(actor.band, actor.speed)
    background, exposure = draw_background(rng, street), sample_exposure(rng)
    next_id = number_tracks(actors, 1)
    dt = 1.0 / fps
    frames = []
    for t in range(num_frames):
        rendering = render(street, actors, background, image_id=t)
        rendering.target["track_ids"] = torch.tensor([a.track_id for a in rendering.kept], dtype=torch.int64)
        if semantic:
            add_semantic(rendering, background[1])
        frames.append((finish(rng, rendering.image, exposure), rendering.target))
        move(actors, street, dt)
        actors = [a for a in actors if in_view(a, street)] + spawn(rng, street, actors, classes, speeds, dt)
        next_id = number_tracks(actors, next_id)
    return frames
