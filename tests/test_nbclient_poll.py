"""book/_ext/nbclient_poll.py: the book's notebook executor waits for replies in short polls, same deadline."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from pathlib import Path
from queue import Empty

import pytest
from jupyter_client.channels import AsyncZMQSocketChannel

_spec = importlib.util.spec_from_file_location("nbclient_poll", Path(__file__).resolve().parents[1] / "book/_ext/nbclient_poll.py")
nbclient_poll = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbclient_poll)


class _Channel:
    """A shell channel whose reply is already waiting but is only seen on the ``arrives_on``-th poll."""

    def __init__(self, arrives_on: int | None) -> None:
        self.arrives_on, self.waits = arrives_on, []

    async def get_msg(self, timeout=None):
        self.waits.append(timeout)
        if len(self.waits) == self.arrives_on:
            return {"msg_type": "execute_reply"}
        await asyncio.sleep(min(timeout, 0.01))  # a missed wake-up: the poll only ends with its timeout
        raise Empty


def test_a_reply_missed_by_one_poll_is_seen_by_the_next():
    channel = _Channel(arrives_on=3)
    get_msg = nbclient_poll.sliced_get_msg(_Channel.get_msg)
    assert asyncio.run(get_msg(channel, timeout=1800)) == {"msg_type": "execute_reply"}
    assert len(channel.waits) == 3 and max(channel.waits) <= nbclient_poll.POLL_SECONDS


def test_no_reply_still_raises_empty_at_the_callers_deadline():
    channel = _Channel(arrives_on=None)
    get_msg = nbclient_poll.sliced_get_msg(_Channel.get_msg)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(get_msg(channel, timeout=0.05))
    assert 0.05 <= time.monotonic() - start < 0.5
    # each slice may wait only for what is left of the caller's timeout
    assert channel.waits[0] <= 0.05 and all(b < a for a, b in zip(channel.waits, channel.waits[1:]))


def test_setup_patches_jupyter_clients_async_channel_once():
    original = AsyncZMQSocketChannel.get_msg
    try:
        nbclient_poll.setup(app=None)
        patched = AsyncZMQSocketChannel.get_msg
        nbclient_poll.setup(app=None)
        assert patched is AsyncZMQSocketChannel.get_msg and patched.sliced
    finally:
        AsyncZMQSocketChannel.get_msg = original
