"""Drawing ToyCity's actors with OpenCV, each on its own small canvas (the street is ``background.py``).

An actor is drawn once, in metres, on a :class:`Patch` just large enough to hold it; the patch
keeps a colour image and a binary mask side by side, drawn by the same OpenCV calls without
anti-aliasing, so the mask is exactly the set of pixels the actor painted. The scene pastes the
patches far to near (see ``scene.py``). Drawing per patch rather than per full-size mask keeps a
1024x512 scene well under 0.1 s.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import name2label

from .world import Actor, Camera

SHIFT = 3  # OpenCV fixed-point bits: coordinates are given in 1/8 pixel
ONE = 1 << SHIFT
Colour = tuple[int, int, int]


class Patch:
    """A canvas for one actor: ``rgb`` (h, w, 3) uint8 and ``mask`` (h, w) uint8, drawn in metres.

    Actor coordinates are metres with the origin at the actor's ground contact point, ``x``
    forward (the direction it faces) and ``y`` up. ``direction=-1`` mirrors the drawing. The
    canvas is only the part of the actor's box that lies inside the image, so a bus that is
    mostly out of view costs no more than its visible part: ``left``, ``top`` are the image
    column and row of the canvas's top-left pixel.
    """

    def __init__(self, half_width: float, height: float, scale: float, direction: int, camera: Camera,
                 anchor: tuple[float, float]):
        self.scale, self.direction = scale, direction
        full_w = int(math.ceil(2 * half_width * scale)) + 2
        self.full_h = int(math.ceil(height * scale)) + 2
        origin = (half_width * scale + 1, height * scale + 1)  # ground contact point in the full box
        box_left = int(round(anchor[0] - origin[0]))
        box_top = int(round(anchor[1] - origin[1]))
        self.left, self.top = max(box_left, 0), max(box_top, 0)
        right = min(box_left + full_w, camera.image_width)
        bottom = min(box_top + self.full_h, camera.image_height)
        self.row_offset = self.top - box_top  # rows of the full box above the canvas
        self.origin = (origin[0] - (self.left - box_left), origin[1] - self.row_offset)
        self.rgb = np.zeros((max(bottom - self.top, 0), max(right - self.left, 0), 3), np.uint8)
        self.mask = np.zeros(self.rgb.shape[:2], np.uint8)

    def px(self, points) -> np.ndarray:
        """Metres (x forward, y up) -> fixed-point canvas pixel coordinates, int32 [N, 2]."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        ox, oy = self.origin
        cols = ox + p[:, 0] * self.direction * self.scale
        rows = oy - p[:, 1] * self.scale
        return np.round(np.stack([cols, rows], 1) * ONE).astype(np.int32)

    def width(self, metres: float) -> int:
        """A line thickness in whole pixels, at least 1."""
        return max(1, int(round(metres * self.scale)))

    def poly(self, points, colour: Colour) -> None:
        pts = [self.px(points)]
        cv2.fillPoly(self.rgb, pts, colour, cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.mask, pts, 1, cv2.LINE_8, SHIFT)

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: Colour) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], colour)

    def circle(self, centre, radius: float, colour: Colour, thickness: float | None = None) -> None:
        c = tuple(int(v) for v in self.px(centre)[0])
        r = int(round(radius * self.scale * ONE))
        t = -1 if thickness is None else self.width(thickness)
        cv2.circle(self.rgb, c, r, colour, t, cv2.LINE_8, SHIFT)
        cv2.circle(self.mask, c, r, 1, t, cv2.LINE_8, SHIFT)

    def line(self, points, colour: Colour, thickness: float) -> None:
        pts = [self.px(points)]
        t = self.width(thickness)
        cv2.polylines(self.rgb, pts, False, colour, t, cv2.LINE_8, SHIFT)
        cv2.polylines(self.mask, pts, False, 1, t, cv2.LINE_8, SHIFT)

    def shade(self, top: float, bottom: float) -> None:
        """Multiply brightness from ``top`` at the top row to ``bottom`` at the bottom (daylight from above)."""
        rows = slice(self.row_offset, self.row_offset + self.rgb.shape[0])
        gain = np.linspace(top, bottom, self.full_h, dtype=np.float32)[rows, None, None]
        self.rgb = np.clip(self.rgb * gain, 0, 255).astype(np.uint8)


def darker(colour: Colour, factor: float = 0.6) -> Colour:
    return tuple(int(c * factor) for c in colour)


GLASS = (70, 95, 120)
TYRE = (25, 25, 28)
HUB = (150, 150, 155)


# --- people ---------------------------------------------------------------------------------

def draw_person(p: Patch, look: dict, phase: float) -> None:
    """A walking person in side view: legs and arms swing with ``phase``."""
    h = look["height"]
    hip, shoulder = 0.52 * h, 0.81 * h
    swing = 0.45 * math.sin(phase)
    leg = 0.5 * h
    for sign in (1, -1):
        foot = (sign * swing * leg, 0.03)
        p.line([(0, hip), (foot[0] * 0.5 + 0.03, hip * 0.5), foot], look["pants"], 0.13 * h / 1.75)
        p.rect(foot[0] - 0.05, 0.0, foot[0] + 0.13, 0.06, (30, 25, 20))
    if look["bag"]:
        p.rect(-0.22, hip, -0.08, hip + 0.28 * h, darker(look["shirt"], 0.5))
    p.poly([(-0.12, shoulder), (0.11, shoulder), (0.12, hip), (-0.12, hip)], look["shirt"])
    hand = (-swing * 0.3 * h, shoulder - 0.32 * h)
    p.line([(0, shoulder - 0.02), hand], look["shirt"], 0.08 * h / 1.75)
    p.circle(hand, 0.045, look["skin"])
    head_r = 0.115 * h / 1.75
    p.rect(-0.035, shoulder, 0.035, shoulder + 0.06, look["skin"])
    p.circle((0.01, h - head_r), head_r, look["skin"])
    p.poly([(-head_r, h - head_r), (0.5 * head_r, h + 0.002), (head_r * 0.3, h - 0.4 * head_r),
            (-head_r, h - 1.3 * head_r)], look["hair"])


def draw_rider(p: Patch, look: dict, phase: float) -> None:
    """A person seated on a bicycle or motorcycle (drawn separately), hands on the handlebar."""
    on_motorcycle = look["vehicle"] == "motorcycle"
    s = look["height"] / 1.75
    hip = (-0.2, 0.9) if not on_motorcycle else (-0.25, 0.8)
    shoulder = (hip[0] + 0.3, hip[1] + 0.52 * s)
    handle = (0.42, 0.98) if not on_motorcycle else (0.5, 1.0)
    pedal = (0.17 * math.cos(phase), 0.32 + 0.17 * math.sin(phase)) if not on_motorcycle else (0.15, 0.4)
    knee = (hip[0] + 0.4, hip[1] - 0.12)
    p.line([hip, knee, pedal], look["pants"], 0.13 * s)
    p.poly([(hip[0] - 0.12, hip[1]), (hip[0] + 0.12, hip[1]), (shoulder[0] + 0.11, shoulder[1]),
            (shoulder[0] - 0.11, shoulder[1])], look["shirt"])
    p.line([shoulder, handle], look["shirt"], 0.08 * s)
    head_r = 0.115 * s
    head = (shoulder[0] + 0.08, shoulder[1] + 0.07 + head_r)
    p.circle(head, head_r, look["skin"])
    if look["helmet"] or on_motorcycle:
        p.poly([(head[0] - head_r * 1.1, head[1]), (head[0] + head_r * 1.1, head[1]),
                (head[0] + 0.4 * head_r, head[1] + 1.15 * head_r), (head[0] - 0.5 * head_r, head[1] + 1.1 * head_r)],
               darker(look["shirt"], 0.4))


# --- two-wheelers ---------------------------------------------------------------------------

def draw_bicycle(p: Patch, look: dict, phase: float) -> None:
    """Spoked-less wheels as rings and a diamond frame: a thin mask with holes, like real bicycles."""
    r = 0.34
    rear, front = (-0.52, r), (0.52, r)
    crank, seat, handle = (0.0, 0.3), (-0.18, 0.86), (0.42, 0.98)
    for hub in (rear, front):
        p.circle(hub, r, TYRE, thickness=0.05)
        p.circle(hub, 0.04, HUB)
    frame = look["frame"]
    p.line([rear, crank, seat, rear], frame, 0.04)
    p.line([crank, (0.36, 0.82), seat], frame, 0.04)
    p.line([(0.36, 0.82), front], frame, 0.04)
    p.line([(0.36, 0.82), handle], frame, 0.035)
    p.rect(seat[0] - 0.12, seat[1], seat[0] + 0.1, seat[1] + 0.05, (20, 20, 20))
    pedal = (0.17 * math.cos(phase), 0.3 + 0.17 * math.sin(phase))
    p.line([crank, pedal], (60, 60, 60), 0.03)


def draw_motorcycle(p: Patch, look: dict, phase: float) -> None:
    """Solid wheels, an engine block, a tank and a seat."""
    r = 0.32
    for hub in ((-0.72, r), (0.72, r)):
        p.circle(hub, r, TYRE)
        p.circle(hub, 0.15, HUB)
    p.poly([(-0.45, 0.35), (0.3, 0.3), (0.35, 0.62), (-0.3, 0.65)], (70, 70, 75))  # engine
    p.poly([(-0.9, 0.75), (-0.2, 0.72), (0.1, 0.95), (0.5, 0.92), (0.45, 0.7), (-0.8, 0.62)], look["body"])
    p.line([(0.72, r), (0.5, 1.0), (0.42, 1.08)], look["frame"], 0.05)
    p.rect(0.5, 0.88, 0.62, 0.96, (240, 230, 160))  # headlight


# --- vehicles -------------------------------------------------------------------------------

def wheels(p: Patch, xs, r: float) -> None:
    for x in xs:
        p.circle((x, r), r, TYRE)
        p.circle((x, r), 0.55 * r, HUB)
        p.circle((x, r), 0.2 * r, darker(HUB))


def draw_car(p: Patch, look: dict, phase: float) -> None:
    """A side view: body, cabin with two side windows, lights, two wheels."""
    L, H = look["length"], look["height"]
    kx, ky = L / 4.3, H / 1.45
    s = look["roof_shift"]
    body = look["body"]

    def pts(points):
        return [(x * kx, y * ky) for x, y in points]

    p.poly(pts([(-2.15, 0.28), (2.15, 0.28), (2.15, 0.66), (2.0, 0.8), (1.1, 0.88), (0.45 + s, 1.42),
                (-1.15 + s, 1.45), (-1.95, 0.98), (-2.15, 0.92)]), body)
    p.poly(pts([(0.38 + s, 1.34), (0.95, 0.9), (-0.25, 0.9), (-0.25 + s / 2, 1.36)]), GLASS)
    p.poly(pts([(-0.4 + s / 2, 1.36), (-0.4, 0.9), (-1.75, 0.93), (-1.12 + s, 1.37)]), GLASS)
    p.line(pts([(-0.33, 0.35), (-0.33, 0.88)]), darker(body), 0.025)
    p.line(pts([(-2.1, 0.55), (2.1, 0.55)]), darker(body, 0.8), 0.03)
    p.rect(2.02 * kx, 0.6 * ky, 2.15 * kx, 0.72 * ky, (245, 235, 180))
    p.rect(-2.15 * kx, 0.7 * ky, -2.05 * kx, 0.86 * ky, (200, 30, 30))
    wheels(p, (1.4 * kx, -1.4 * kx), 0.33)
    p.shade(1.15, 0.8)


def draw_truck(p: Patch, look: dict, phase: float) -> None:
    """A cab at the front and a tall cargo box behind it, three wheels."""
    L, H = look["length"], look["height"]
    front, back = L / 2, -L / 2
    p.rect(back, 0.55, front - 2.1, H, look["cargo"])
    p.line([(back + 0.1, H - 0.15), (front - 2.2, H - 0.15)], darker(look["cargo"], 0.8), 0.05)
    p.poly([(front - 2.0, 0.45), (front, 0.45), (front, 1.6), (front - 0.4, 2.75), (front - 2.0, 2.8)], look["body"])
    p.poly([(front - 0.95, 1.7), (front - 0.1, 1.7), (front - 0.45, 2.55), (front - 0.95, 2.6)], GLASS)
    p.rect(back, 0.45, front - 2.0, 0.6, (40, 40, 40))
    p.rect(front - 0.12, 0.8, front, 1.0, (245, 235, 180))
    wheels(p, (front - 1.1, back + 1.4, back + 2.5), 0.48)
    p.shade(1.1, 0.8)


def draw_bus(p: Patch, look: dict, phase: float) -> None:
    """A long box with a band of windows, a door at the front, a route sign, two wheels."""
    L, H = look["length"], look["height"]
    front, back = L / 2, -L / 2
    p.poly([(back, 0.35), (front, 0.35), (front, H - 0.2), (front - 0.3, H), (back, H)], look["body"])
    x = front - 1.6
    while x - 1.3 > back + 0.3:
        p.rect(x - 1.3, 1.2, x - 0.1, H - 0.35, GLASS)
        x -= 1.45
    p.rect(front - 1.4, 0.45, front - 0.4, H - 0.35, darker(GLASS, 0.8))  # door
    p.rect(front - 0.3, 1.2, front, H - 0.35, GLASS)  # windscreen
    p.rect(front - 3.0, H - 0.3, front - 1.6, H - 0.08, (255, 160, 20))  # route sign
    wheels(p, (front - 2.6, back + 2.8), 0.5)
    p.shade(1.1, 0.8)


def draw_train(p: Patch, look: dict, phase: float) -> None:
    """A tram: articulated body, windows, pantograph on the roof, small bogies."""
    L, H = look["length"], look["height"]
    front, back = L / 2, -L / 2
    p.poly([(back, 0.4), (front, 0.4), (front, H - 0.5), (front - 0.6, H), (back, H)], look["body"])
    x = front - 1.0
    while x - 1.2 > back + 0.2:
        p.rect(x - 1.2, 1.3, x - 0.15, H - 0.5, GLASS)
        x -= 1.4
    for joint in (-L / 6, L / 6):
        p.rect(joint - 0.15, 0.4, joint + 0.15, H, (60, 60, 60))
    p.line([(-1.5, H), (-0.5, H + 0.6), (0.5, H), ], (50, 50, 50), 0.05)
    p.line([(-0.8, H + 0.6), (0.2, H + 0.6)], (50, 50, 50), 0.06)
    wheels(p, (back + 1.5, back + 2.5, front - 2.5, front - 1.5), 0.3)
    p.shade(1.1, 0.85)


# --- stuff occluders ------------------------------------------------------------------------

def draw_pole(p: Patch, look: dict, phase: float) -> None:
    """A street-lamp post with a 1 m arm at the top."""
    p.rect(-0.08, 0, 0.08, look["height"], look["colour"])
    p.rect(-0.08, look["height"] - 0.15, 1.0, look["height"], look["colour"])


def draw_tree(p: Patch, look: dict, phase: float) -> None:
    h, w = look["height"], look["length"]
    p.rect(-0.12, 0, 0.12, h * 0.55, (90, 60, 35))
    green = look["leaves"]
    for dx, dy, r in ((0, 0.72, 0.32), (-0.22, 0.62, 0.22), (0.22, 0.64, 0.24), (0.05, 0.85, 0.2)):
        p.circle((dx * w, dy * h), r * w, tuple(int(c * (0.85 + dy * 0.2)) for c in green))


DRAWERS = {
    "person": draw_person,
    "rider": draw_rider,
    "bicycle": draw_bicycle,
    "motorcycle": draw_motorcycle,
    "car": draw_car,
    "truck": draw_truck,
    "bus": draw_bus,
    "train": draw_train,
    "pole": draw_pole,
    "tree": draw_tree,
}
HEADROOM = {"train": 0.7, "pole": 0.0}  # metres drawn above ``look['height']`` (pantograph; none for poles)


def draw_actor(actor: Actor, camera: Camera) -> Patch:
    """Draw one actor on a patch clipped to the image (possibly empty, when it is out of view)."""
    look = actor.look
    half_width = look["length"] / 2 + 0.5 if actor.kind != "pole" else 1.2  # room for the lamp arm
    height = look["height"] + HEADROOM.get(actor.kind, 0.15)
    anchor = (camera.col(actor.x, actor.z), camera.row(actor.z))
    patch = Patch(half_width, height, camera.scale(actor.z), actor.direction, camera, anchor)
    if patch.mask.size:
        DRAWERS[actor.kind](patch, look, actor.phase)
    return patch


#: Cityscapes label id of what each actor kind paints (stuff occluders included).
LABEL_ID = {kind: name2label[name].id for kind, name in {
    "sky": "sky", "building": "building", "road": "road", "sidewalk": "sidewalk", "pole": "pole",
    "tree": "vegetation", **{k: k for k in DRAWERS if k not in ("pole", "tree")}}.items()}
