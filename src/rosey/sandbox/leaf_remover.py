"""Removing plugin cgroup leaves off the event loop: one worker thread, in order.

Removing a leaf waits until its killed tree has left it and then takes the kernel's cgroup
mutex (``rmdir``), which a move into a cgroup holds for a whole RCU grace period after a quiet
moment (``rosey.sandbox.cgroups.AttachPrimer``, which a restart takes as soon as the old
tree is killed): a restart must not wait for that on the event loop.
"""

from __future__ import annotations

import logging
import queue
import threading

from rosey.sandbox.cgroups import PluginCgroup

__all__ = ["LeafRemover"]

log = logging.getLogger("rosey.sandbox")


class LeafRemover:
    """Removes plugin leaves in a worker thread, in the order they were handed over.

    ``idle`` waits until every leaf handed over so far is removed (or failed: logged);
    ``close`` stops the worker and skips what is still queued (the group's own ``close``
    removes what is left, at once).
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[PluginCgroup | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._closing = False
        self._done = threading.Condition()

    def remove(self, leaf: PluginCgroup) -> None:
        """Remove ``leaf`` soon (its final counters are kept now: ``events`` still answers)."""
        leaf.keep_events()
        with self._done:
            if self._closing:
                return  # the group's close removes it, with every other leaf
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="rosey cgroup remover", daemon=True
                )
                self._thread.start()
        self._queue.put(leaf)

    def idle(self, timeout: float | None = None) -> bool:
        """Wait until every leaf handed over so far is removed; False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker after the leaf it is removing, if any (bounded by ``timeout``)."""
        with self._done:
            self._closing = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _work(self) -> None:
        while (leaf := self._queue.get()) is not None:
            try:
                if not self._closing:
                    leaf.remove()
            except OSError as exc:  # it must not end the worker: the group's close retries
                log.warning("%s: could not remove its cgroups: %s", leaf.name, exc)
            finally:
                with self._done:
                    self._pending -= 1
                    self._done.notify_all()
