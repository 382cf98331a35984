"""The dashboard's figures: page weight, state change → shown in the browser, idle CPU cost.

    .venv/bin/python bench/dashboard.py [--changes 20] [--idle 20]

Against a real ``rosey run --no-console`` (tests/botproc.py) with dice and api_base:

- **page weight**: the bytes of ``GET /`` (HTML with its script and style inlined: the whole
  dashboard, nothing else is loaded), and gzip-compressed for reference;
- **state change → browser**: Debian's Chromium (Playwright) shows the dashboard; dice is
  stopped and started ``--changes`` times over the NATS management API. For each state event
  the manager publishes (its ``timestamp``, taken when the transition happens), the time until
  the card's ``data-state`` showed that state (a MutationObserver in the page, same clock);
- **idle CPU of the bot's own process** (not plugins, not the broker) over ``--idle`` s: with
  ``http: null``, with the face on and no client, and with the dashboard open (it refreshes
  every 2 s and holds an event stream).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, BotProcess, run_bot

PLUGINS = [EXAMPLE_PLUGINS / "dice", FIXTURE_PLUGINS / "api_base"]
HTTP_ON = 'http: {listen: "127.0.0.1:0"}\n'
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Records, in the page, each state dice's card shows (epoch ms, sub-ms resolution). The
#: observer runs once per batch of changes: each record's ``oldValue`` is the value the one
#: before it set, so every state shown is recorded, not only the last of a batch.
OBSERVER = """
window.__seen = [];
const target = document.querySelector('.card[data-plugin="dice"]');
new MutationObserver((records) => {
  const t = performance.timeOrigin + performance.now();
  const values = records.slice(1).map((r) => r.oldValue).concat([target.dataset.state]);
  for (const state of values) window.__seen.push({state, t});
}).observe(target, {attributes: true, attributeFilter: ["data-state"], attributeOldValue: true});
"""


def _dashboard_url(bot: BotProcess) -> str:
    return f"{bot.runtime['http_url']}/?token={bot.runtime['http_token']}"


async def page_weight(bot: BotProcess) -> tuple[int, int]:
    async with aiohttp.ClientSession() as session, session.get(_dashboard_url(bot)) as response:
        body = await response.read()
    return len(body), len(gzip.compress(body))


async def latencies(bot: BotProcess, changes: int, profile: Path) -> list[float]:
    assert bot.nc is not None
    events: list[dict[str, Any]] = []

    async def on_event(msg: Any) -> None:
        events.append(json.loads(msg.data))

    await bot.nc.subscribe("rosey.manager.events.dice", cb=on_event)
    await bot.nc.flush()
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile), executable_path="/usr/bin/chromium", headless=True, args=FLAGS
        )
        try:
            page = await context.new_page()
            await page.goto(_dashboard_url(bot))
            await page.wait_for_selector('.card[data-plugin="dice"][data-state="running"]')
            await page.wait_for_selector('#live[data-live="yes"]')
            await page.evaluate(OBSERVER)
            events.clear()
            for _ in range(changes):
                for action in ("stop", "start"):
                    reply = await bot.manage(action, {"plugin": "dice"})
                    assert reply["ok"], reply
            await page.wait_for_function(
                "window.__seen.length > 0 && window.__seen.at(-1).state === 'running'",
                timeout=15_000,
            )
            seen: list[dict[str, Any]] = await page.evaluate("window.__seen")
        finally:
            await context.close()
    found: list[float] = []
    at = 0
    for event in events:
        for i in range(at, len(seen)):
            if seen[i]["state"] == event["state"]:
                found.append(seen[i]["t"] - event["timestamp"] * 1000)
                at = i + 1
                break
    return found


async def idle_cpu(tmp: Path, config: str, seconds: float, dashboard: bool) -> float:
    """Percent of one core used by the bot's own process while idle."""
    async with run_bot(tmp, plugins_dirs=PLUGINS, config=config) as bot:
        proc = psutil.Process(bot.pid)
        async with async_playwright() as playwright:
            context = None
            if dashboard:
                context = await playwright.chromium.launch_persistent_context(
                    str(tmp / "profile"),
                    executable_path="/usr/bin/chromium",
                    headless=True,
                    args=FLAGS,
                )
                page = await context.new_page()
                await page.goto(_dashboard_url(bot))
                await page.wait_for_selector('#live[data-live="yes"]')
            await asyncio.sleep(2.0)  # settle after start-up
            before = proc.cpu_times()
            started = time.monotonic()
            await asyncio.sleep(seconds)
            after = proc.cpu_times()
            elapsed = time.monotonic() - started
            if context is not None:
                await context.close()
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20, help="stop/start cycles of dice")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle per CPU run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rosey-bench-dashboard-") as folder:
        tmp = Path(folder)
        for sub in ("a", "b", "c", "d"):
            (tmp / sub).mkdir()
        async with run_bot(tmp / "a", plugins_dirs=PLUGINS, config=HTTP_ON) as bot:
            raw, packed = await page_weight(bot)
            print(f"page weight: {raw} bytes (HTML+JS+CSS, one request), {packed} gzipped")
            found = await latencies(bot, args.changes, tmp / "profile")
        found.sort()
        p95 = found[min(len(found) - 1, int(0.95 * len(found)))]
        print(
            f"state change → shown in the browser: {len(found)} changes, median "
            f"{statistics.median(found):.1f} ms, p95 {p95:.1f} ms, max {found[-1]:.1f} ms"
        )
        for sub, label, config, dashboard in (
            ("b", "http: null", "http: null\n", False),
            ("c", "HTTP face on, no client", HTTP_ON, False),
            ("d", "HTTP face on, dashboard open", HTTP_ON, True),
        ):
            cpu = await idle_cpu(tmp / sub, config, args.idle, dashboard)
            print(f"idle CPU of the bot process, {label}: {cpu:.2f} % of one core")


if __name__ == "__main__":
    asyncio.run(main())
