"""A thread's alternate signal stack survives OpenVINO: compiled models made and freed in any order
leave the thread with the stack it had (OpenVINO's CPU plugin would leave one it has freed, and the
next signal handled on it crashes the process)."""

from __future__ import annotations

import ctypes
import gc
import sys

import pytest

from course_lib.utils.signal_stack import _sigaltstack, _StackT, current_signal_stack, kept_signal_stack

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack as glibc declares it")


def _set_stack(buffer: ctypes.Array) -> None:
    _sigaltstack(_StackT(ctypes.addressof(buffer), 0, len(buffer)), None)


def test_the_block_cannot_leave_another_stack_behind():
    before = current_signal_stack()
    mine = ctypes.create_string_buffer(64 * 1024)
    with kept_signal_stack():
        _set_stack(mine)
        assert current_signal_stack()[0] == ctypes.addressof(mine)
    assert current_signal_stack() == before


def test_an_error_in_the_block_still_gives_the_stack_back():
    before = current_signal_stack()
    with pytest.raises(RuntimeError), kept_signal_stack():
        _set_stack(ctypes.create_string_buffer(64 * 1024))
        raise RuntimeError("compile failed")
    assert current_signal_stack() == before


def test_openvino_models_freed_out_of_order_leave_the_stack_as_it_was(tmp_path):
    """Two predictors made A then B and freed A then B: raw OpenVINO leaves A's freed stack in place."""
    pytest.importorskip("openvino")
    torch = pytest.importorskip("torch")
    from course_lib.deploy.export import export_onnx, to_openvino
    from course_lib.deploy.predictor import openvino_predictor
    from course_lib.modeling.maskrcnn import build

    torch.manual_seed(0)
    model = build("toycity_small").eval()
    ov_model = to_openvino(export_onnx(model, tmp_path / "model.onnx", 64, 128, "baseline"))
    before = current_signal_stack()
    first = openvino_predictor(ov_model, threads=1)
    second = openvino_predictor(ov_model, threads=1)
    assert current_signal_stack() == before
    del first
    gc.collect()
    del second
    gc.collect()
    assert current_signal_stack() == before
