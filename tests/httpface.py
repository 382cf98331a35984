"""Talk to a running bot's HTTP face (DESIGN 2.11) in tests: requests and an SSE reader."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from botproc import BotProcess

#: Config that turns the face on at a free port (runtime.json says which).
HTTP_ON = 'http: {listen: "127.0.0.1:0"}\n'


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    kind: str
    body: Any


class HttpApi:
    """Requests to the face of ``bot`` with its token (``token=None``: without one)."""

    def __init__(self, bot: BotProcess, session: aiohttp.ClientSession) -> None:
        self.url = str(bot.runtime["http_url"])
        self.token = str(bot.runtime["http_token"])
        self.session = session

    def headers(self, token: str | None = "", **extra: str) -> dict[str, str]:
        token = self.token if token == "" else token
        auth = {} if token is None else {"Authorization": f"Bearer {token}"}
        return {**auth, **extra}

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "",
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """``(status, body)``: the body as JSON when it is JSON, else as text."""
        async with self.session.request(
            method, self.url + path, data=data, headers={**self.headers(token), **(headers or {})}
        ) as response:
            text = await response.text()
            if response.content_type == "application/json":
                return response.status, json.loads(text)
            return response.status, text

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return await self.request("POST", path, **kwargs)

    @asynccontextmanager
    async def events(self, last_id: str | None = None) -> AsyncIterator[EventStream]:
        headers = self.headers(Accept="text/event-stream")
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(
            self.url + "/api/events", headers=headers, timeout=timeout
        ) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "text/event-stream"
            yield EventStream(response)


class EventStream:
    """Reads server-sent events from an open response."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None

    async def next(self, timeout: float = 15.0) -> SseEvent:
        """The next event (comments and the retry hint skipped), within ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while True:
                fields: dict[str, str] = {}
                while True:
                    raw = await self.response.content.readline()
                    if not raw:
                        raise AssertionError("the event stream ended")
                    line = raw.decode().rstrip("\n")
                    if line == "":
                        break
                    if line.startswith(":"):
                        continue
                    key, _, value = line.partition(": ")
                    fields[key] = fields.get(key, "") + value
                if "data" not in fields:
                    continue
                event = SseEvent(fields.get("id"), fields.get("event", "message"), None)
                event = SseEvent(event.id, event.kind, json.loads(fields["data"]))
                if event.id is not None:
                    self.last_id = event.id
                return event

    async def until(self, kind: str, match: dict[str, Any], timeout: float = 15.0) -> SseEvent:
        """The first event of ``kind`` whose body has every item of ``match``."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next(timeout)
                if event.kind == kind and all(event.body.get(k) == v for k, v in match.items()):
                    return event


@asynccontextmanager
async def http_api(bot: BotProcess) -> AsyncIterator[HttpApi]:
    async with aiohttp.ClientSession() as session:
        yield HttpApi(bot, session)
