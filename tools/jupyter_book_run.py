"""Run ``jupyter-book`` with its kernel client waiting for replies in one-second slices.

``python3 dev.py book`` runs this instead of the ``jupyter-book`` script; the arguments
are jupyter-book's own.

Why: jupyter-book executes each chapter through nbclient, which waits for a cell's
``execute_reply`` with one asyncio ``poll`` on the shell socket, as long as the cell
timeout (600 s in _config.yml). pyzmq's asyncio poll watches an edge-triggered file
descriptor, and a wake-up can be missed (zeromq/pyzmq#1558, #2173): the reply sits in
the socket while the poll sleeps. When the poll times out, pyzmq polls the socket once
more and finds the reply, so the build goes on without an error, but only after the
whole timeout. Two CI rehearsals of this book stalled so, in chapter 10, for about 600 s
each; a stack dump of the stalled build showed nbclient waiting on the shell channel
after the kernel had gone idle, with ipykernel 7.4 and again with 6.31.

The fix here: ``AsyncZMQSocketChannel.get_msg(timeout)`` polls in slices of at most
:data:`SLICE` seconds until the same deadline, so a missed wake-up costs at most one
slice. Nothing else changes: a message is returned as soon as a slice finds it, and
``queue.Empty`` is raised at the caller's deadline, as before. nbval, which runs the
chapters as tests, uses jupyter_client's blocking channels (zmq's own poll) and does
not need this.
"""

from __future__ import annotations

import sys
import time
from queue import Empty

SLICE = 1.0   # seconds: the longest a missed wake-up can delay a reply


def sliced(get_msg, slice_s: float = SLICE):
    """``get_msg(self, timeout)`` made to wait in slices of at most ``slice_s`` seconds."""

    async def get_msg_sliced(self, timeout: float | None = None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            step = slice_s if left is None else max(0.0, min(slice_s, left))
            try:
                return await get_msg(self, step)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    get_msg_sliced.__wrapped__ = get_msg
    return get_msg_sliced


def patch() -> None:
    """Install :func:`sliced` on jupyter_client's asyncio channels (once)."""
    from jupyter_client.channels import AsyncZMQSocketChannel

    if not hasattr(AsyncZMQSocketChannel.get_msg, "__wrapped__"):
        AsyncZMQSocketChannel.get_msg = sliced(AsyncZMQSocketChannel.get_msg)


def main(argv: list[str]) -> int:
    patch()
    from jupyter_book.cli.main import main as jupyter_book

    sys.argv = ["jupyter-book", *argv]
    try:
        jupyter_book()
    except SystemExit as done:   # click ends with sys.exit
        return int(done.code or 0) if not isinstance(done.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
