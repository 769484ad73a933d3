"""Sphinx extension: the notebook executor waits for each cell's reply in one-second polls.

myst-nb executes the chapters with nbclient, which waits for a cell's ``execute_reply`` in a single
``shell_channel.get_msg(timeout=<cell timeout>)``. After a cell that displays an ipywidget (a
progress bar of ``tqdm.auto`` is one in a kernel; Week 1's explorables once were) that wait
sometimes does not wake up when the reply arrives and sleeps until the cell timeout, 30 minutes
here: the build looks hung while the kernel sits idle (jupyter/nbclient#312, open). Measured when
the RPN chapter's NMS slider was an ipywidget, executing that chapter as myst-nb does: 4 of 8 runs
stalled for the whole timeout, 0 of 10 with this patch. Polling in one-second slices until the
same deadline sees the waiting reply at the next slice; a cell that really runs long still times
out as before.
"""

from __future__ import annotations

import time
from queue import Empty

from jupyter_client.channels import AsyncZMQSocketChannel

#: Longest single wait for a message, in seconds.
POLL_SECONDS = 1.0


def sliced_get_msg(get_msg):
    """``get_msg(self, timeout)`` that waits at most :data:`POLL_SECONDS` per call to ``get_msg``,
    until ``timeout`` (``None``: forever); raises ``Empty`` at the deadline like the original."""

    async def get_msg_in_slices(self, timeout: float | None = None, **kwargs):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SECONDS if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await get_msg(self, timeout=min(POLL_SECONDS, left), **kwargs)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    get_msg_in_slices.sliced = True
    return get_msg_in_slices


def setup(app):
    if not getattr(AsyncZMQSocketChannel.get_msg, "sliced", False):
        AsyncZMQSocketChannel.get_msg = sliced_get_msg(AsyncZMQSocketChannel.get_msg)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
