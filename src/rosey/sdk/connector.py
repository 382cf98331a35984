"""The ``Connector`` seam: what a platform module implements, and the plugin that runs it.

A connector process is an ordinary plugin process (``rosey.sdk.runner``) whose entrypoint is a
``ConnectorPlugin`` subclass naming a platform client. The seam is the bus side, written once:

- what the client reports (``rosey.events.message``, ``rosey.events.user.join|leave``,
  ``rosey.events.media.change``) is published on the connector's **own** subjects
  ``rosey.plugins.<instance>.connector.<kind>``; the core relays it onto ``rosey.events.*``
  after stamping the instance's platform and channel (``rosey.security.connector_relay``), so
  a connector can never speak for another platform or channel;
- what the bus asks it to say arrives on ``rosey.connector.send`` (its account's local name for
  the core's ``rosey.connectors.<instance>.send``, which carries only the sends meant for it) and
  is handed to ``client.enqueue``;
- the client's status (state, ``last_error`` in words, counters) is published on
  ``rosey.plugins.<instance>.connector.status`` when it changes, for ``rosey plugin status``.

The next platform (IRC, Matrix, Discord) is one client class with ``run``/``stop``/``enqueue``/
``status`` and a ``ConnectorPlugin`` subclass that builds it from its settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

from rosey.protocol import subjects
from rosey.sdk import Plugin, on_event

__all__ = [
    "CONNECTOR_EVENT_PREFIX",
    "EVENT_KINDS",
    "SEND_LOCAL",
    "ConnectorClient",
    "ConnectorPlugin",
]

#: The connector's events go out as ``rosey.plugins.<instance>.connector.<kind>``.
CONNECTOR_EVENT_PREFIX = "connector"
#: ``rosey.events.<kind>`` a connector may report (the relay refuses any other).
EVENT_KINDS = ("message", "user.join", "user.leave", "media.change")
#: The local subject of the sends meant for this instance (imported from the core).
SEND_LOCAL = subjects.CONNECTOR_SEND_LOCAL
_EVENTS = "rosey.events."
_STATUS_EVERY_S = 1.0


class ConnectorClient(Protocol):
    """One platform, one channel: what ``ConnectorPlugin`` drives."""

    async def run(self) -> None: ...

    async def stop(self) -> None: ...

    def enqueue(self, request: Mapping[str, Any]) -> bool: ...

    def status_words(self) -> dict[str, Any]: ...


class ConnectorPlugin(Plugin):
    """Runs a ``ConnectorClient`` in a plugin process: events out, sends in, status."""

    client: ConnectorClient | None = None
    _task: asyncio.Task[None] | None = None
    _status_task: asyncio.Task[None] | None = None

    def make_client(self) -> ConnectorClient:
        """Build the platform client from ``self.config`` (the instance's settings)."""
        raise NotImplementedError

    async def publish_event(self, subject: str, body: dict[str, Any]) -> None:
        """The client's ``EventSink``: ``rosey.events.<kind>`` → our own connector subject."""
        kind = subject.removeprefix(_EVENTS)
        await self.publish(f"{CONNECTOR_EVENT_PREFIX}.{kind}", body)

    async def on_start(self) -> None:
        self.client = self.make_client()
        self._task = asyncio.create_task(self.client.run(), name=f"connector {self.name}")
        self._task.add_done_callback(self._ended)
        self._status_task = asyncio.create_task(self._report_status(), name="connector status")

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("connector stopped: %s", task.exception())

    async def _report_status(self) -> None:
        """Publish the client's status when it changes (checked every second)."""
        last: dict[str, Any] | None = None
        while self.client is not None:
            words = self.client.status_words()
            if words != last:
                last = words
                with contextlib.suppress(Exception):  # the bus may be going away
                    await self.publish(f"{CONNECTOR_EVENT_PREFIX}.status", words)
            await asyncio.sleep(_STATUS_EVERY_S)

    async def on_stop(self) -> None:
        if self._status_task is not None:
            self._status_task.cancel()
        if self.client is not None:
            await self.client.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout=5)

    @on_event(SEND_LOCAL)
    async def on_send(self, body: dict[str, Any]) -> None:
        if self.client is not None and isinstance(body, dict):
            self.client.enqueue(body)
