"""``rosey top``: a live terminal view of the plugins, like ``pm2 monit`` or ``htop``.

Two halves. :class:`TopModel` is plain data and arithmetic (what the table shows, commands per
second, errors), tested with tables. :func:`run_top` is the shell: curses from the standard
library (no dependency; it only runs in the ``rosey`` CLI, never on a plugin's import path),
one connection to the bot as the operator, a ``list`` every ``interval`` seconds, and a
subscription to the router's ``rosey.commands.*.result`` / ``.error`` (DESIGN 2.4) for the
command counts. Keys: up/down (or k/j) select, ``r`` restart, ``s`` stop (asks ``y``),
``t`` start, ``q`` or Ctrl-C quit. curses.wrapper restores the terminal however it ends.

Every text shown comes from the bot (plugin names, ``last_error`` quoting a plugin's stderr), so
it goes through ``rosey.protocol.text.clean`` (one line) before it reaches the screen.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import curses
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosey.api.client import ManagementClient, NoBot, locate
from rosey.bus.client import Message
from rosey.errors import BusError, RoseyError
from rosey.protocol import subjects
from rosey.protocol.text import clean

#: Commands per second are counted over this many seconds.
RATE_WINDOW = 10.0
COLUMNS = ("NAME", "KIND", "STATE", "PID", "CPU%", "MEM MB", "CMD/S", "ERRORS", "RESTARTS", "UP")
EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE = 0, 2, 3


def one_line(text: object, width: int = 200) -> str:
    return clean(str(text), one_line=True)[:width]


def uptime(seconds: object) -> str:
    if not isinstance(seconds, int | float) or seconds <= 0:
        return "-"
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


@dataclass
class TopModel:
    """What ``rosey top`` knows: the last ``list``, and the commands seen since it started."""

    plugins: list[dict[str, Any]] = field(default_factory=list)
    #: plugin → times of its recent commands (results and errors), for the rate.
    recent: dict[str, collections.deque[float]] = field(default_factory=dict)
    #: plugin → errors seen since ``rosey top`` started.
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    selected: int = 0
    message: str = ""
    confirm: str | None = None  # the plugin a stop waits to be confirmed for

    def command(self, plugin: str, ok: bool, now: float) -> None:
        """One ``rosey.commands.<plugin>.result`` (``ok``) or ``.error`` was seen."""
        times = self.recent.setdefault(plugin, collections.deque(maxlen=10000))
        times.append(now)
        if not ok:
            self.errors[plugin] += 1

    def rate(self, plugin: str, now: float) -> float:
        times = self.recent.get(plugin)
        if not times:
            return 0.0
        while times and times[0] < now - RATE_WINDOW:
            times.popleft()
        return len(times) / RATE_WINDOW

    def update(self, plugins: list[dict[str, Any]]) -> None:
        """A new ``list``; the selection stays on the same plugin if it is still there."""
        name = self.selected_name
        self.plugins = sorted(plugins, key=lambda p: str(p.get("name")))
        names = [p.get("name") for p in self.plugins]
        self.selected = names.index(name) if name in names else min(self.selected, len(names) - 1)
        self.selected = max(self.selected, 0)

    def move(self, step: int) -> None:
        if self.plugins:
            self.selected = max(0, min(len(self.plugins) - 1, self.selected + step))

    @property
    def selected_name(self) -> str | None:
        if 0 <= self.selected < len(self.plugins):
            return str(self.plugins[self.selected].get("name"))
        return None

    def rows(self, now: float) -> list[tuple[str, ...]]:
        """The table: one tuple of cells per plugin, in ``COLUMNS`` order."""
        out: list[tuple[str, ...]] = []
        for p in self.plugins:
            name = str(p.get("name"))
            stats: Mapping[str, Any] = p.get("stats") or {}
            running = bool(stats.get("running"))
            out.append(
                (
                    one_line(name, 32),
                    one_line(p.get("kind", "plugin"), 9),
                    one_line(p.get("state"), 9),
                    str(stats.get("pid")) if running else "-",
                    f"{float(stats.get('cpu_percent') or 0):.1f}" if running else "-",
                    f"{float(stats.get('memory_mb') or 0):.1f}" if running else "-",
                    f"{self.rate(name, now):.1f}",
                    str(self.errors.get(name, 0)),
                    str(p.get("restart_count", 0)),
                    uptime(p.get("uptime_seconds")),
                )
            )
        return out

    def detail(self) -> str:
        """The selected plugin's reason for a non-running state (``last_error``), one line."""
        if not 0 <= self.selected < len(self.plugins):
            return ""
        error = self.plugins[self.selected].get("last_error")
        return one_line(error, 500) if error else ""


def layout(rows: list[tuple[str, ...]]) -> tuple[str, list[str]]:
    """Header and lines, columns padded to their widest cell."""
    widths = [len(c) for c in COLUMNS]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return line(COLUMNS), [line(row) for row in rows]


STATE_COLOURS = {
    "running": curses.COLOR_GREEN,
    "starting": curses.COLOR_YELLOW,
    "stopping": curses.COLOR_YELLOW,
    "unhealthy": curses.COLOR_YELLOW,
    "crashed": curses.COLOR_RED,
    "disabled": curses.COLOR_RED,
}


class TopApp:
    """The shell: the bus, the keyboard and the screen, on one event loop."""

    def __init__(self, screen: curses.window, client: ManagementClient, interval: float) -> None:
        self.screen = screen
        self.client = client
        self.interval = interval
        self.model = TopModel()
        self.quit = asyncio.Event()
        self.changed = asyncio.Event()
        self._actions: set[asyncio.Task[None]] = set()
        self._colours: dict[str, int] = {}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._setup_screen()
        subs = [
            await self.client.bus.subscribe(subjects.COMMANDS_RESULTS_ALL, self._on_command),
            await self.client.bus.subscribe(subjects.COMMANDS_ERRORS_ALL, self._on_command),
        ]
        loop.add_reader(sys.stdin.fileno(), self._on_keys)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._quit)
        poller = asyncio.create_task(self._poll(), name="top:poll")
        try:
            while not self.quit.is_set():
                self._draw()
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self.changed.wait()  # a key, a reply, a new list, or quit
        finally:
            poller.cancel()
            for task in self._actions:
                task.cancel()
            await asyncio.gather(poller, *self._actions, return_exceptions=True)
            loop.remove_reader(sys.stdin.fileno())
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            for sub in subs:
                await sub.unsubscribe()

    def _quit(self) -> None:
        self.quit.set()
        self.changed.set()

    def _setup_screen(self) -> None:
        self.screen.nodelay(True)
        self.screen.keypad(True)
        with contextlib.suppress(curses.error):
            curses.curs_set(0)
        if curses.has_colors():
            curses.use_default_colors()
            for number, (state, colour) in enumerate(STATE_COLOURS.items(), start=1):
                curses.init_pair(number, colour, -1)
                self._colours[state] = curses.color_pair(number)

    async def _poll(self) -> None:
        while True:
            try:
                reply = await self.client.call("list", {}, timeout=max(2.0, self.interval * 3))
                if reply["ok"]:
                    self.model.update(list(reply["result"]["plugins"]))
                else:
                    self.model.message = one_line(reply.get("error", {}).get("message", "failed"))
            except RoseyError as exc:
                self.model.message = one_line(f"no answer from the bot: {exc}")
            self.changed.set()
            await asyncio.sleep(self.interval)

    async def _on_command(self, message: Message) -> None:
        parts = message.subject.split(".")  # rosey.commands.<plugin>.result|error
        if len(parts) == 4:
            self.model.command(parts[2], parts[3] == "result", time.monotonic())

    def _on_keys(self) -> None:
        while True:
            try:
                key = self.screen.getch()
            except curses.error:
                return
            if key == -1:
                return
            self._key(key)
            self.changed.set()

    def _key(self, key: int) -> None:
        model = self.model
        if model.confirm is not None:
            target, model.confirm = model.confirm, None
            if key in (ord("y"), ord("Y")):
                self._act("stop", target)
            else:
                model.message = f"stop of {target} cancelled"
            return
        name = model.selected_name
        if key in (ord("q"), ord("Q"), 3, 27):  # 3: Ctrl-C without a signal (raw mode)
            self._quit()
        elif key in (curses.KEY_UP, ord("k")):
            model.move(-1)
        elif key in (curses.KEY_DOWN, ord("j")):
            model.move(1)
        elif name is None:
            return
        elif key == ord("r"):
            self._act("restart", name)
        elif key == ord("t"):
            self._act("start", name)
        elif key == ord("s"):
            model.confirm = name
            model.message = f"stop {name}? y to confirm, any other key cancels"

    def _act(self, action: str, name: str) -> None:
        self.model.message = f"{action} {name}…"
        task = asyncio.create_task(self._call(action, name), name=f"top:{action}:{name}")
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)

    async def _call(self, action: str, name: str) -> None:
        try:
            reply = await self.client.call(action, {"plugin": name}, timeout=120)
        except RoseyError as exc:
            self.model.message = one_line(f"{action} {name}: no answer: {exc}")
        else:
            if reply["ok"]:
                state = reply["result"].get("state", "done")
                self.model.message = one_line(f"{action} {name}: {state}")
            else:
                error = reply.get("error") or {}
                self.model.message = one_line(f"{action} {name}: {error.get('message', 'failed')}")
        self.changed.set()

    def _draw(self) -> None:
        screen = self.screen
        screen.erase()
        height, width = screen.getmaxyx()
        now = time.monotonic()
        header, lines = layout(self.model.rows(now))

        def put(y: int, text: str, attr: int = 0) -> None:
            if 0 <= y < height:
                with contextlib.suppress(curses.error):  # the last cell of the screen
                    screen.addnstr(y, 0, text, max(0, width - 1), attr)

        title = f"rosey top — {len(self.model.plugins)} plugin(s) — {time.strftime('%H:%M:%S')}"
        put(0, title, curses.A_BOLD)
        put(1, header, curses.A_REVERSE)
        for index, (line, plugin) in enumerate(zip(lines, self.model.plugins, strict=True)):
            attr = self._colours.get(str(plugin.get("state")), 0)
            if index == self.model.selected:
                attr |= curses.A_BOLD | curses.A_STANDOUT
            put(2 + index, line, attr)
        detail = self.model.detail()
        if detail:
            put(height - 3, f"{self.model.selected_name}: {detail}")
        put(height - 2, self.model.message, curses.A_BOLD)
        put(height - 1, "↑/↓ select  r restart  s stop  t start  q quit", curses.A_DIM)
        screen.refresh()


def run_top(nats_url: str | None, state_dir: Path | None, *, interval: float = 1.0) -> int:
    """``rosey top``: 0 when quit, 3 when no bot could be reached (said off the screen)."""
    address = locate(nats_url, state_dir)
    if isinstance(address, NoBot):
        print(clean(f"rosey top: {address.reason}"), file=sys.stderr)
        return EXIT_UNREACHABLE
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        print("rosey top: needs a terminal (try 'rosey plugin list')", file=sys.stderr)
        return EXIT_USAGE

    async def main(screen: curses.window) -> str | None:
        """None once quit; why the bot could not be reached otherwise."""
        try:
            async with ManagementClient(address) as client:
                await client.call("list", {}, timeout=10)  # reachable before we draw
                await TopApp(screen, client, max(0.1, interval)).run()
        except BusError as exc:
            return f"no running bot could be reached at {address.url}: {exc}"
        return None

    # wrapper restores the terminal (also on an exception) before anything is printed.
    error: str | None = curses.wrapper(lambda screen: asyncio.run(main(screen)))
    if error is not None:
        print(clean(f"rosey top: {error}"), file=sys.stderr)
        return EXIT_UNREACHABLE
    return EXIT_OK
