"""Drawing ToyCity's street background: sky, buildings, pavements and road in colour, and the
Cityscapes label id of every pixel, drawn by the same OpenCV calls (see ``draw.py`` for the actors).
"""

from __future__ import annotations

import cv2
import numpy as np

from .draw import LABEL_ID, darker
from .world import LANE_WIDTH, Camera, Street


def draw_background(rng: np.random.Generator, street: Street) -> tuple[np.ndarray, np.ndarray]:
    """Sky, building facades, far sidewalk, road with lane marks and a zebra crossing, near sidewalk.

    Returns the image, uint8 [H, W, 3] RGB, and its Cityscapes label ids, uint8 [H, W].
    """
    cam = street.camera
    H, W = cam.image_height, cam.image_width
    image = np.empty((H, W, 3), np.uint8)
    top_sky, low_sky = rng.integers(90, 200, 3), rng.integers(170, 250, 3)
    t = np.linspace(0, 1, H)[:, None]
    image[:] = (top_sky * (1 - t) + low_sky * t).astype(np.uint8)[:, None, :]
    labels = np.full((H, W), LABEL_ID["sky"], np.uint8)

    far_z = street.far_sidewalk[1]
    draw_buildings(rng, image, labels, cam, far_z)
    band = lambda z0, z1: (int(round(cam.row(z1))), int(round(cam.row(z0))))  # noqa: E731 - rows of a depth band
    pave = rng.integers(120, 190)
    r0, r1 = band(*street.far_sidewalk)
    image[r0:r1] = (pave, pave - 5, pave - 12)  # pave >= 120: no underflow
    labels[r0:r1] = LABEL_ID["sidewalk"]
    r0, r1 = band(*street.road)
    asphalt = int(rng.integers(55, 100))
    image[r0:r1] = (asphalt, asphalt, asphalt + 4)
    labels[r0:r1] = LABEL_ID["road"]
    r0, r1 = band(*street.near_sidewalk)
    image[r0:] = (pave + 10, pave + 3, pave - 5)
    labels[r0:] = LABEL_ID["sidewalk"]
    for z in (street.road[0], street.road[1]):  # curbs
        curb = slice(int(cam.row(z + 0.15)), int(cam.row(z - 0.15)) + 1)
        image[curb] = (200, 200, 195)
        labels[curb] = LABEL_ID["sidewalk"]
    joint = (int(pave) - 25, int(pave) - 30, int(pave) - 35)
    for z in np.arange(street.near_sidewalk[0] + 1.0, street.near_sidewalk[1], 1.2):  # paving joints
        cv2.line(image, (0, int(cam.row(z))), (W, int(cam.row(z))), joint, 1)

    ground_quad = lambda x0, x1, z0, z1: np.round(  # noqa: E731 - a ground rectangle in pixels
        [[cam.col(x0, z0), cam.row(z0)], [cam.col(x1, z0), cam.row(z0)],
         [cam.col(x1, z1), cam.row(z1)], [cam.col(x0, z1), cam.row(z1)]]).astype(np.int32)
    lane_edges = [street.road[0] + k * LANE_WIDTH for k in range(1, len(street.lanes))]
    divider = street.road[0] + LANE_WIDTH * (len(street.lanes) // 2)
    x_lo, x_hi = cam.x_range(street.road[1])
    for z in lane_edges:
        if abs(z - divider) < 1e-6:  # solid double line between the two directions
            for dz in (-0.12, 0.12):
                cv2.fillPoly(image, [ground_quad(x_lo, x_hi, z + dz - 0.05, z + dz + 0.05)], (230, 200, 60))
            continue
        for x in np.arange(np.floor(x_lo / 9) * 9, x_hi, 9.0):  # 3 m dashes every 9 m
            cv2.fillPoly(image, [ground_quad(x, x + 3, z - 0.07, z + 0.07)], (235, 235, 235))
    x = street.crosswalk_x
    for z in np.arange(street.road[0] + 0.4, street.road[1] - 0.6, 1.0):  # zebra: bars along the traffic
        cv2.fillPoly(image, [ground_quad(x - 2.0, x + 2.0, z, z + 0.5)], (225, 225, 225))
    return image, labels


def draw_buildings(rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, cam: Camera, z: float) -> None:
    """A row of facades at depth ``z``: random widths, heights, colours and window grids."""
    x_lo, x_hi = cam.x_range(z)
    scale = cam.scale(z)
    ground = cam.row(z)
    x = x_lo - rng.uniform(0, 10)
    while x < x_hi:
        width, height = rng.uniform(8, 22), rng.uniform(8, 35)
        if rng.random() < 0.15:  # a side street: sky shows through
            x += width
            continue
        c0 = int(cam.col(x, z))
        c1 = int(cam.col(x + width, z))
        top = int(ground - height * scale)
        wall = tuple(int(v) for v in rng.integers(70, 220, 3))
        cv2.rectangle(image, (c0, top), (c1, int(ground)), wall, -1)
        cv2.rectangle(labels, (c0, top), (c1, int(ground)), LABEL_ID["building"], -1)
        glass = tuple(int(v) for v in rng.integers(30, 110, 3))
        lit = rng.random()
        for wx in np.arange(x + 1.0, x + width - 1.5, 2.6):
            for wy in np.arange(3.5, height - 1.5, 3.2):
                colour = (230, 210, 140) if rng.random() < 0.15 * lit else glass
                cv2.rectangle(image, (int(cam.col(wx, z)), int(ground - (wy + 1.7) * scale)),
                              (int(cam.col(wx + 1.3, z)), int(ground - wy * scale)), colour, -1)
        cv2.rectangle(image, (int(cam.col(x + 0.8, z)), int(ground - 2.8 * scale)),
                      (int(cam.col(x + width - 0.8, z)), int(ground)), darker(glass, 0.8), -1)  # shop front
        x += width
