"""tools/jupyter_book_run.py: a reply that a missed wake-up hides is still taken in time.

The stall it guards against (pyzmq's asyncio poll missing an edge-triggered wake-up)
cannot be made to happen on demand, so these tests check the waiting itself: each
slice is short, a message found by a later slice is returned, the caller's deadline
still ends the wait with queue.Empty, and the patch goes on jupyter_client's class once.
"""

import asyncio
import importlib.util
import time
from pathlib import Path
from queue import Empty

import pytest

spec = importlib.util.spec_from_file_location(
    "jupyter_book_run", Path(__file__).resolve().parent.parent / "tools" / "jupyter_book_run.py")
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)


class Channel:
    """A shell channel whose reply is only seen by the third poll (the first two missed it)."""

    def __init__(self, found_on=3):
        self.timeouts = []
        self.found_on = found_on

    async def get_msg(self, timeout=None):
        self.timeouts.append(timeout)
        if len(self.timeouts) >= self.found_on:
            return {"msg_type": "execute_reply"}
        await asyncio.sleep(min(timeout, 0.01))
        raise Empty


def test_a_later_slice_returns_the_reply_well_before_the_deadline():
    ch = Channel()
    get = runner.sliced(Channel.get_msg, slice_s=0.05)
    start = time.monotonic()
    msg = asyncio.run(get(ch, 600))
    assert msg == {"msg_type": "execute_reply"} and len(ch.timeouts) == 3
    assert all(t <= 0.05 for t in ch.timeouts) and time.monotonic() - start < 5


def test_the_deadline_still_ends_the_wait_with_empty():
    ch = Channel(found_on=10**9)
    get = runner.sliced(Channel.get_msg, slice_s=0.02)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(get(ch, 0.1))
    waited = time.monotonic() - start
    assert 0.1 <= waited < 2 and len(ch.timeouts) >= 2 and ch.timeouts[-1] <= 0.02


def test_no_timeout_waits_in_slices_until_a_message():
    ch = Channel(found_on=4)
    get = runner.sliced(Channel.get_msg, slice_s=0.01)
    assert asyncio.run(get(ch)) == {"msg_type": "execute_reply"}
    assert ch.timeouts[:3] == [0.01, 0.01, 0.01]


def test_the_patch_goes_on_jupyter_clients_async_channel_once():
    from jupyter_client.channels import AsyncZMQSocketChannel

    original = AsyncZMQSocketChannel.get_msg
    try:
        runner.patch()
        patched = AsyncZMQSocketChannel.get_msg
        runner.patch()
        assert AsyncZMQSocketChannel.get_msg is patched and patched.__wrapped__ is original
    finally:
        AsyncZMQSocketChannel.get_msg = original
