"""A Kalman filter on boxes: constant velocity for the centre and the size, as SORT-style trackers use.

The state of a track is ``x = [cx, cy, w, h, vcx, vcy, vw, vh]`` (box centre, width, height and
their rates in pixels per frame) with a covariance ``P`` (8 x 8) that says how sure the filter is of
each. A detection measures ``z = [cx, cy, w, h]``. Each frame:

* **predict**: ``x <- F x``, ``P <- F P F^T + Q``. ``F`` adds one frame of velocity to the
  position; ``Q`` (process noise) says how much the velocity may change unseen, so ``P`` grows
  with every frame without a detection;
* **update** with a detection: the innovation ``y = z - H x`` (``H`` reads the position out of the
  state), its covariance ``S = H P H^T + R`` (``R``: measurement noise), the **gain**
  ``K = P H^T S^-1``, then ``x <- x + K y`` and ``P <- (I - K H) P``.

The gain weighs the detection against the prediction: large while ``P`` is large (a young or lost
track follows its detections), small once the track is settled. With fixed ``Q`` and ``R`` the gain
converges to a constant: the steady-state gain, which is what a fixed-gain alpha-beta filter (the
course tracker's default motion model) applies from the first frame.

Noise standard deviations are proportional to the box size (1/20 of it for positions, 1/160 for
velocities), the parameterisation of DeepSORT and BoT-SORT (Wojke et al. 2017, Aharon et al.
2022): a pixel of jitter means more on a small box than on a large one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ``F``: one frame of constant velocity, ``[8, 8]``.
TRANSITION = np.eye(8) + np.eye(8, k=4)
#: ``H``: the measured part of the state (centre and size), ``[4, 8]``.
OBSERVATION = np.eye(4, 8)


@dataclass(frozen=True)
class KalmanNoise:
    """Standard deviations of the noise, as fractions of the box's width (x, w) or height (y, h)."""

    position: float = 1 / 20
    velocity: float = 1 / 160

    def scales(self, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(position std [4], velocity std [4])`` for a box of ``size = [w, h]``."""
        wh = np.tile(size, 2)  # [w, h, w, h]: x-like then y-like components, twice
        return self.position * wh, self.velocity * wh

    def process(self, size: np.ndarray) -> np.ndarray:
        """``Q [8, 8]`` for a box of ``size = [w, h]``."""
        position, velocity = self.scales(size)
        return np.diag(np.concatenate([position, velocity]) ** 2)

    def measurement(self, size: np.ndarray) -> np.ndarray:
        """``R [4, 4]`` for a box of ``size = [w, h]``."""
        return np.diag(self.scales(size)[0] ** 2)


def xyxy_to_cxcywh(box: np.ndarray) -> np.ndarray:
    """``[x1, y1, x2, y2] -> [cx, cy, w, h]`` (``[4]``)."""
    return np.concatenate([(box[:2] + box[2:]) / 2, box[2:] - box[:2]])


def cxcywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    """``[cx, cy, w, h] -> [x1, y1, x2, y2]`` (``[4]``)."""
    return np.concatenate([box[:2] - box[2:] / 2, box[:2] + box[2:] / 2])


@dataclass(frozen=True)
class BoxKalman:
    """One track's Kalman state: ``mean [8]`` and ``covariance [8, 8]``. Immutable: each step returns a new one."""

    mean: np.ndarray
    covariance: np.ndarray
    noise: KalmanNoise = KalmanNoise()

    @classmethod
    def start(cls, box: np.ndarray, noise: KalmanNoise = KalmanNoise()) -> BoxKalman:
        """A new track at the XYXY ``box`` ``[4]``: at rest, unsure of its velocity (10x the process noise's std)."""
        z = xyxy_to_cxcywh(np.asarray(box, dtype=np.float64))
        position, velocity = noise.scales(z[2:])
        std = np.concatenate([2 * position, 10 * velocity])
        return cls(np.concatenate([z, np.zeros(4)]), np.diag(std**2), noise)

    def predict(self, steps: int = 1) -> BoxKalman:
        """The state ``steps`` frames later without a detection (``P`` grows by ``Q`` each frame)."""
        mean, covariance = self.mean, self.covariance
        for _ in range(steps):
            q = self.noise.process(mean[2:4])
            mean = TRANSITION @ mean
            covariance = TRANSITION @ covariance @ TRANSITION.T + q
        return BoxKalman(mean, covariance, self.noise)

    def gain(self) -> np.ndarray:
        """``K = P H^T S^-1`` ``[8, 4]``: how far an update moves each state entry per pixel of innovation."""
        s = OBSERVATION @ self.covariance @ OBSERVATION.T + self.noise.measurement(self.mean[2:4])
        # K S = P H^T, solved rather than inverting S (S is symmetric positive definite)
        return np.linalg.solve(s, OBSERVATION @ self.covariance).T

    def update(self, box: np.ndarray) -> BoxKalman:
        """The state after the detection ``box`` (XYXY ``[4]``) at the predicted frame."""
        k = self.gain()
        innovation = xyxy_to_cxcywh(np.asarray(box, dtype=np.float64)) - OBSERVATION @ self.mean
        covariance = (np.eye(8) - k @ OBSERVATION) @ self.covariance
        return BoxKalman(self.mean + k @ innovation, (covariance + covariance.T) / 2, self.noise)

    def box(self) -> np.ndarray:
        """The mean box, XYXY ``[4]``, at least one pixel wide and high (a shrinking box never turns inside out)."""
        centre, size = self.mean[:2], np.maximum(self.mean[2:4], 1.0)
        return cxcywh_to_xyxy(np.concatenate([centre, size]))
