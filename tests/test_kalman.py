"""The course's Kalman filter against two independent ones: filterpy's generic filter with the same
matrices, and boxmot's KalmanFilterXYWH (BoT-SORT's), on generated box sequences."""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.kalman import KalmanFilter

from course_lib.tracking.kalman import OBSERVATION, TRANSITION, BoxKalman, KalmanNoise, cxcywh_to_xyxy, xyxy_to_cxcywh
from course_lib.tracking.track import Tracker


def random_walk(rng: np.random.Generator, frames: int) -> np.ndarray:
    """``[frames, 4]`` XYXY boxes: a box of random size moving and growing at random rates, with jitter."""
    centre, size = rng.uniform(20, 500, 2), rng.uniform(2, 200, 2)
    velocity, growth = rng.normal(0, 5, 2), rng.normal(0, 0.5, 2)
    boxes = []
    for t in range(frames):
        wh = np.maximum(size + growth * t, 1.0)
        boxes.append(cxcywh_to_xyxy(np.concatenate([centre + velocity * t, wh])) + rng.normal(0, 1, 4))
    return np.asarray(boxes)


@pytest.mark.parametrize("seed", range(6))
def test_predict_and_update_match_filterpy(seed):
    rng = np.random.default_rng(seed)
    boxes = random_walk(rng, 30)
    missed = set(rng.choice(np.arange(1, 30), size=5, replace=False).tolist())  # frames with no detection
    noise = KalmanNoise(position=rng.uniform(0.01, 0.2), velocity=rng.uniform(0.001, 0.05))
    ours = BoxKalman.start(boxes[0], noise)
    reference = KalmanFilter(dim_x=8, dim_z=4)
    reference.x, reference.P = ours.mean.copy(), ours.covariance.copy()  # the start is checked below
    reference.F, reference.H = TRANSITION, OBSERVATION
    for t in range(1, 30):
        reference.Q = noise.process(reference.x[2:4])
        reference.predict()
        ours = ours.predict()
        if t not in missed:
            reference.R = noise.measurement(reference.x[2:4])
            reference.update(xyxy_to_cxcywh(boxes[t]))
            ours = ours.update(boxes[t])
        np.testing.assert_allclose(ours.mean, reference.x, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(ours.covariance, reference.P, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_matches_boxmots_xywh_filter(seed):
    """BoT-SORT's filter: same state, same size-proportional noise, its own code for every step."""
    xywh = pytest.importorskip("boxmot.motion.kalman_filters").KalmanFilterXYWH()
    rng = np.random.default_rng(100 + seed)
    boxes = random_walk(rng, 25)
    ours = BoxKalman.start(boxes[0])
    mean, covariance = xywh.initiate(xyxy_to_cxcywh(boxes[0]))
    np.testing.assert_allclose(ours.mean, mean)
    np.testing.assert_allclose(ours.covariance, covariance)
    for t in range(1, 25):
        mean, covariance = xywh.predict(mean, covariance)
        ours = ours.predict()
        if t % 7:  # every seventh frame has no detection
            mean, covariance = xywh.update(mean, covariance, xyxy_to_cxcywh(boxes[t]))
            ours = ours.update(boxes[t])
        np.testing.assert_allclose(ours.mean, mean, rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(ours.covariance, covariance, rtol=1e-6, atol=1e-9)


def test_predict_several_steps_is_several_single_steps():
    state = BoxKalman.start(np.array([10.0, 20, 40, 80])).update(np.array([12.0, 21, 43, 82]))
    once, thrice = state.predict(3), state.predict().predict().predict()
    np.testing.assert_allclose(once.mean, thrice.mean)
    np.testing.assert_allclose(once.covariance, thrice.covariance)
    assert np.all(np.diag(once.covariance) > np.diag(state.covariance))  # unseen frames make it less sure


def test_gain_settles_to_a_constant_for_a_box_of_constant_size():
    """Fixed noise (a box that keeps its size) drives the gain to a steady state: an alpha-beta filter."""
    state = BoxKalman.start(np.array([100.0, 100, 140, 180]))
    gains = []
    for _ in range(200):
        state = state.predict().update(np.array([100.0, 100, 140, 180]))
        gains.append(state.predict().gain())
    assert np.abs(gains[-1] - gains[-2]).max() < 1e-9
    assert np.abs(gains[0] - gains[-1]).max() > 0.05  # the young track's gain was not yet the steady one
    alpha, beta = gains[-1][0, 0], gains[-1][4, 0]  # position and velocity gain of the centre's x
    assert 0 < beta < alpha < 1


def test_kalman_box_never_turns_inside_out():
    state = BoxKalman.start(np.array([0.0, 0, 4, 4]))
    for size in (3.0, 2.0, 1.0, 0.5, 0.2):
        state = state.predict().update(np.array([0.0, 0, size, size]))
    box = state.predict(10).box()
    assert np.all(box[2:] - box[:2] >= 1.0)


def test_tracker_refuses_an_unknown_motion():
    with pytest.raises(ValueError, match="choose one of none, alpha-beta, kalman"):
        Tracker(motion=True)


def test_kalman_exercise_solution_matches_filterpy():
    from course_lib.exercises.realtime import _kalman_cases, _kalman_generated, kalman_step

    for mean, covariance, z, q, r in [*_kalman_cases(), *_kalman_generated()]:
        reference = KalmanFilter(dim_x=2, dim_z=1)
        reference.x, reference.P = np.array(mean, dtype=float), np.array(covariance, dtype=float)
        reference.F, reference.H = np.array([[1.0, 1.0], [0.0, 1.0]]), np.array([[1.0, 0.0]])
        reference.Q, reference.R = np.diag(q), np.array([[r]])
        reference.predict()
        reference.update(np.array([z]))
        ours = kalman_step(mean, covariance, z, q, r)
        np.testing.assert_allclose(ours["mean"], reference.x, atol=1e-12)
        np.testing.assert_allclose(ours["covariance"], reference.P, atol=1e-12)
