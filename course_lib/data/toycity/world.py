"""ToyCity's world: a pinhole camera looking across a street, and the actors placed on it.

Everything here is in metres; nothing is drawn. The camera stands on one sidewalk and looks
across the road, so the street runs left-right in the image and depth ``z`` grows upwards
towards the horizon. A ground point at lateral position ``x`` and depth ``z`` lands at

    u = cx + f * x / z,        v = horizon + f * camera_height / z,

and an object ``h`` metres tall is ``f * h / z`` pixels tall: size shrinks with distance, and far
objects sit higher in the image. The bands of the street, from near to far: near sidewalk, road
lanes (near lanes drive right, far lanes drive left), far sidewalk, building facades.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Sampling weights of the classes when a scene is filled (riders bring their own bicycle or
#: motorcycle, parked two-wheelers are the ``bicycle``/``motorcycle`` entries).
CLASS_WEIGHTS = {
    "person": 0.34,
    "rider": 0.10,
    "car": 0.30,
    "truck": 0.06,
    "bus": 0.05,
    "train": 0.02,
    "motorcycle": 0.05,
    "bicycle": 0.08,
}
VEHICLES = ("car", "truck", "bus", "train")
LANE_WIDTH = 3.5  # metres


@dataclass(frozen=True)
class Camera:
    """A pinhole camera ``height`` metres above the ground, looking horizontally across the street."""

    image_height: int
    image_width: int
    focal: float  # pixels
    cx: float  # principal point column, pixels
    horizon: float  # row of the horizon, pixels
    height: float  # metres above the ground

    def row(self, z: float) -> float:
        """Image row of the ground at depth ``z``."""
        return self.horizon + self.focal * self.height / z

    def col(self, x: float, z: float) -> float:
        """Image column of lateral position ``x`` at depth ``z``."""
        return self.cx + self.focal * x / z

    def scale(self, z: float) -> float:
        """Pixels per metre at depth ``z``."""
        return self.focal / z

    def x_range(self, z: float) -> tuple[float, float]:
        """Lateral positions (metres) visible at depth ``z``: the image's left and right edge."""
        return -self.cx * z / self.focal, (self.image_width - self.cx) * z / self.focal

    def depth_at_row(self, v: float) -> float:
        """Depth of the ground seen at image row ``v`` (``v`` below the horizon)."""
        return self.focal * self.height / (v - self.horizon)


@dataclass(frozen=True)
class Street:
    """Depth bands of the street (metres from the camera) and the lanes' driving directions."""

    camera: Camera
    near_sidewalk: tuple[float, float]  # from the bottom image row to the near curb
    road: tuple[float, float]
    lanes: tuple[tuple[float, int], ...]  # (lane centre depth, direction +1 right / -1 left)
    far_sidewalk: tuple[float, float]
    crosswalk_x: float  # lateral position of the zebra crossing's centre


@dataclass
class Actor:
    """One thing on the street: a labelled object (``kind`` is a class name) or a stuff occluder.

    ``kind`` is a course class name, or ``"pole"``/``"tree"`` (stuff: drawn, occludes, never
    labelled). ``look`` holds everything random about its appearance, drawn once, so that the
    actor looks the same in every frame of a clip. A rider and its two-wheeler are two actors
    that move together.
    """

    kind: str
    x: float  # lateral centre, metres
    z: float  # depth, metres
    direction: int  # +1 faces right, -1 faces left
    speed: float  # metres per second along ``direction`` (lateral)
    look: dict = field(default_factory=dict)
    vz: float = 0.0  # metres per second in depth (pedestrians crossing the road)
    phase: float = 0.0  # walking / pedalling phase, radians
    track_id: int = 0
    labelled: bool = True
    band: str = "near"  # "lane<i>", "bike<i>", "near", "far" or "crossing" (see ``place_depth``)

    @property
    def length(self) -> float:
        """Extent along the street, metres."""
        return self.look["length"]


def sample_camera(rng: np.random.Generator, height: int, width: int) -> Camera:
    """A camera with a random focal length, height and horizon, scaled to the image size."""
    return Camera(
        image_height=height,
        image_width=width,
        focal=width * rng.uniform(0.55, 0.8),
        cx=width * rng.uniform(0.45, 0.55),
        horizon=height * rng.uniform(0.12, 0.28),
        height=rng.uniform(2.2, 3.6),
    )


def sample_street(rng: np.random.Generator, camera: Camera) -> Street:
    """Near sidewalk from the bottom of the image, 2-4 lanes, far sidewalk."""
    z_bottom = camera.depth_at_row(camera.image_height)
    curb = z_bottom + rng.uniform(1.5, 3.5)
    num_lanes = int(rng.integers(2, 5))
    road_end = curb + num_lanes * LANE_WIDTH
    lanes = tuple(
        (curb + (i + 0.5) * LANE_WIDTH, 1 if i < num_lanes // 2 or num_lanes == 1 else -1)
        for i in range(num_lanes)
    )
    far_end = road_end + rng.uniform(3.0, 5.0)
    x_lo, x_hi = camera.x_range(curb)
    return Street(
        camera=camera,
        near_sidewalk=(z_bottom, curb),
        road=(curb, road_end),
        lanes=lanes,
        far_sidewalk=(road_end, far_end),
        crosswalk_x=rng.uniform(x_lo * 0.6, x_hi * 0.6),
    )


def sample_look(rng: np.random.Generator, kind: str) -> dict:
    """Random proportions and colours of one actor (metres, RGB 0..255)."""

    def colour(lo: int = 20, hi: int = 235) -> tuple[int, int, int]:
        return tuple(int(c) for c in rng.integers(lo, hi, size=3))

    if kind == "person" or kind == "rider":
        height = rng.uniform(1.55, 1.95)
        red = int(rng.uniform(90, 240))  # skin tones: red first, green and blue as fractions of it
        skin = (red, int(red * rng.uniform(0.65, 0.8)), int(red * rng.uniform(0.45, 0.65)))
        return {
            "length": 0.5 if kind == "person" else 1.7,
            "height": height,
            "skin": skin,
            "shirt": colour(),
            "pants": colour(10, 160),
            "hair": colour(5, 120),
            "bag": bool(rng.random() < 0.3),
            "helmet": bool(rng.random() < 0.5),
        }
    if kind == "bicycle":
        return {"length": 1.7, "height": 1.05, "frame": colour()}
    if kind == "motorcycle":
        return {"length": 2.1, "height": 1.15, "body": colour(), "frame": colour(10, 90)}
    if kind == "car":
        return {
            "length": rng.uniform(3.8, 4.9),
            "height": rng.uniform(1.35, 1.7),
            "body": colour(),
            "roof_shift": rng.uniform(-0.25, 0.25),
        }
    if kind == "truck":
        return {
            "length": rng.uniform(6.5, 9.0),
            "height": rng.uniform(3.0, 3.6),
            "body": colour(),
            "cargo": colour(120, 250),
        }
    if kind == "bus":
        return {"length": rng.uniform(10.0, 12.5), "height": rng.uniform(2.9, 3.2), "body": colour(60, 250)}
    if kind == "train":
        return {"length": rng.uniform(18.0, 26.0), "height": 3.4, "body": colour(80, 250)}
    if kind == "pole":
        return {"length": 0.2, "height": rng.uniform(4.5, 7.0), "colour": colour(60, 120)}
    if kind == "tree":
        return {
            "length": rng.uniform(2.0, 3.5),
            "height": rng.uniform(4.0, 7.0),
            "leaves": (int(rng.integers(20, 70)), int(rng.integers(80, 150)), int(rng.integers(20, 60))),
        }
    raise ValueError(f"unknown ToyCity actor kind {kind!r}")


SPEEDS = {  # metres per second: (low, high)
    "person": (0.9, 1.6),
    "rider": (3.0, 6.0),
    "car": (5.0, 10.0),
    "truck": (4.0, 8.0),
    "bus": (4.0, 8.0),
    "train": (4.0, 7.0),
    "motorcycle": (5.0, 10.0),
    "bicycle": (3.0, 6.0),
}


def choose_band(rng: np.random.Generator, street: Street, kind: str, far: bool) -> str:
    """Where a new actor of class ``kind`` goes.

    Bands: ``"lane<i>"`` (vehicles), ``"bike<i>"`` (riders, by the curb of the outer lane ``i``),
    ``"near"``/``"far"`` (sidewalks), ``"crossing"`` (pedestrians on the zebra crossing).
    ``far`` puts it in the far half of the street (far lanes, far sidewalk), where it is small.
    """
    num_lanes = len(street.lanes)
    if kind == "rider":
        return f"bike{num_lanes - 1}" if far else "bike0"
    if kind in VEHICLES:
        half = num_lanes // 2
        return f"lane{int(rng.choice(list(range(half, num_lanes) if far else range(0, half))))}"
    if kind == "person" and rng.random() < 0.15:
        return "crossing"
    return "far" if far else "near"


def band_depth(rng: np.random.Generator, street: Street, band: str, kind: str) -> tuple[float, int]:
    """A depth (metres) inside ``band`` and the direction an actor there faces."""
    if band.startswith("bike"):
        index = int(band[4:])
        z = street.road[0] + 0.9 if index == 0 else street.road[1] - 0.9
        return z, street.lanes[index][1]
    if band.startswith("lane"):
        centre, direction = street.lanes[int(band[4:])]
        return centre + rng.uniform(-0.3, 0.3), direction
    direction = int(rng.choice([-1, 1]))
    if band == "crossing":
        return rng.uniform(*street.road), direction
    z0, z1 = street.far_sidewalk if band == "far" else street.near_sidewalk
    if kind in ("bicycle", "motorcycle"):  # parked by the curb
        return (z0 + 0.6 if band == "far" else z1 - 0.6), direction
    return rng.uniform(z0 + (0.3 if band == "far" else 0.5), z1 - 0.3), direction


def in_traffic(band: str) -> bool:
    """Whether actors in ``band`` drive in a queue (lanes, bike lanes) and must not overlap."""
    return band.startswith("lane") or band.startswith("bike")


def overlaps(x: float, length: float, taken: list[tuple[float, float]], gap: float = 0.8) -> bool:
    """Whether the interval ``x ± length/2`` comes closer than ``gap`` to one already taken."""
    return any(abs(x - other) < (length + other_length) / 2 + gap for other, other_length in taken)


def sample_kind(rng: np.random.Generator, classes: tuple[str, ...]) -> str:
    """A class name drawn with :data:`CLASS_WEIGHTS` restricted to ``classes``."""
    weights = np.array([CLASS_WEIGHTS[name] for name in classes])
    return str(classes[int(rng.choice(len(classes), p=weights / weights.sum()))])


def two_wheeler_for(rng: np.random.Generator, classes: tuple[str, ...]) -> str:
    """The vehicle a rider sits on: a bicycle, or a motorcycle when motorcycles are asked for."""
    if "motorcycle" in classes and rng.random() < 0.35:
        return "motorcycle"
    return "bicycle"


def make_actors(
    rng: np.random.Generator,
    kind: str,
    x: float,
    z: float,
    direction: int,
    band: str,
    look: dict,
    classes: tuple[str, ...],
) -> list[Actor]:
    """The actor(s) for one sampled object: a rider comes with its two-wheeler (a separate instance)."""
    moving = kind == "person" or band not in ("near", "far")  # two-wheelers on a sidewalk are parked
    speed = rng.uniform(*SPEEDS[kind]) if moving else 0.0
    if kind == "rider":
        vehicle = two_wheeler_for(rng, classes)
        ride = Actor(vehicle, x, z + 0.01, direction, speed, sample_look(rng, vehicle), labelled=vehicle in classes,
                     phase=rng.uniform(0, 2 * math.pi), band=band)
        look["vehicle"] = vehicle
        rider = Actor("rider", x, z - 0.01, direction, speed, look, phase=ride.phase, band=band)
        return [ride, rider]
    actor = Actor(kind, x, z, direction, speed, look, phase=rng.uniform(0, 2 * math.pi), band=band)
    if band == "crossing":
        actor.vz, actor.speed = actor.speed * float(rng.choice([-1, 1])), 0.0
    return [actor]


def populate(
    rng: np.random.Generator,
    street: Street,
    num_objects: int,
    classes: tuple[str, ...],
    occlusion: float,
    small_share: float,
) -> list[Actor]:
    """Place ``num_objects`` labelled objects (plus a few poles and trees) on the street.

    ``small_share`` is the probability that an object goes to the far half of the street;
    ``occlusion`` is the probability that it is put in line with an object already placed (so
    one hides part of the other) instead of at a uniformly random lateral position.
    Vehicles in one lane never overlap each other.
    """
    camera = street.camera
    actors: list[Actor] = []
    taken: dict[str, list[tuple[float, float]]] = {}
    for _ in range(num_objects):
        kind = sample_kind(rng, classes)
        band = choose_band(rng, street, kind, far=rng.random() < small_share)
        z, direction = band_depth(rng, street, band, kind)
        look = sample_look(rng, kind)
        length = look["length"]
        for _attempt in range(10):
            if band == "crossing":
                x = street.crosswalk_x + rng.uniform(-1.8, 1.8)
            elif actors and rng.random() < occlusion:
                anchor = actors[int(rng.integers(len(actors)))]
                u = camera.col(anchor.x, anchor.z)
                x = (u - camera.cx) * z / camera.focal + rng.uniform(-0.5, 0.5) * max(length, anchor.length)
            else:
                lo, hi = camera.x_range(z)
                x = rng.uniform(lo - 0.3 * length, hi + 0.3 * length)
            if not in_traffic(band) or not overlaps(x, length, taken.get(band, [])):
                break
        else:
            continue  # the lane is full here; skip this object rather than stack vehicles
        taken.setdefault(band, []).append((x, length))
        actors += make_actors(rng, kind, x, z, direction, band, look, classes)
    actors += street_furniture(rng, street)
    return actors


def street_furniture(rng: np.random.Generator, street: Street) -> list[Actor]:
    """0-3 poles and trees on the near sidewalk's curb: unlabelled occluders in front of the road."""
    actors = []
    for _ in range(int(rng.integers(0, 4))):
        kind = "pole" if rng.random() < 0.6 else "tree"
        z = street.near_sidewalk[1] - rng.uniform(0.3, 0.8)
        lo, hi = street.camera.x_range(z)
        actors.append(Actor(kind, rng.uniform(lo, hi), z, 1, 0.0, sample_look(rng, kind), labelled=False))
    return actors
