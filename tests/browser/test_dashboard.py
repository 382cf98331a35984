"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) against a
real ``rosey run``: it loads with the token and shows the plugins, a button stops a plugin and
the card changes without a reload, a crash shows up live with its reason, and text a hostile
plugin chose (its crash reason, a violation's subject, its log) is shown as text, never run.

``ROSEY_UPDATE_SCREENSHOTS=1`` saves the screenshot in ``docs/img/dashboard.png`` (the docs
show it); otherwise it goes to the test's temporary folder, so normal runs leave the tree alone.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Dialog, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from botproc import EXAMPLE_PLUGINS, FIXTURE_PLUGINS, REPO, run_bot
from httpface import HTTP_ON

CHROMIUM = Path("/usr/bin/chromium")
#: No GPU, network side channels or first-run work: a quiet, repeatable browser.
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
PLUGINS = [
    EXAMPLE_PLUGINS / "dice",
    FIXTURE_PLUGINS / "api_base",
    FIXTURE_PLUGINS / "api_dependent",
    FIXTURE_PLUGINS / "dashboard_hostile",
]
CRASH_TEXT = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
FORBIDDEN_SUBJECT = "rosey.manager.<img/src/onerror=window.__pwned=3>"
SCREENSHOT = REPO / "docs" / "img" / "dashboard.png"
#: Seconds to wait for anything the page should show (it updates within a second).
WAIT_MS = 15_000


@asynccontextmanager
async def chromium(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """Debian's Chromium with a fresh profile; closed (all its processes ended) afterwards."""
    _need_chromium()
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()


def _need_chromium() -> None:
    """A missing browser fails the test (it never skips): ``./dev test`` installs it."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run ./dev test, which installs Debian's chromium")


async def shows_text(page: Page, selector: str, text: str) -> None:
    """Wait until the element's text holds ``text``; on timeout, say what it held instead."""
    try:
        await page.wait_for_function(
            "([sel, text]) => (document.querySelector(sel)?.textContent || '').includes(text)",
            arg=[selector, text],
            timeout=WAIT_MS,
        )
    except PlaywrightTimeout:
        shown = await page.text_content(selector)
        state = await page.evaluate(
            "(sel) => ({open: document.querySelector(sel)?.closest('details')?.open,"
            " card: document.querySelector(sel)?.closest('.card')?.textContent})",
            selector,
        )
        raise AssertionError(
            f"{selector} never showed {text!r}; it shows {shown!r} ({state})"
        ) from None


def card(page: Page, name: str, state: str | None = None) -> str:
    """The selector of a plugin's card (in ``state``)."""
    wanted = f'[data-state="{state}"]' if state else ""
    return f'.card[data-plugin="{name}"]{wanted}'


async def test_the_dashboard_shows_acts_and_updates_live(
    tmp_path: Path, bot_privilege: str
) -> None:
    config = HTTP_ON + "security: {max_violations: 1000}\n"
    unprivileged = bot_privilege == "unprivileged"
    async with (
        run_bot(tmp_path, plugins_dirs=PLUGINS, config=config, unprivileged=unprivileged) as bot,
        chromium(tmp_path) as context,
    ):
        page = await context.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        dialogs: list[str] = []

        async def confirm(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            await dialog.accept()

        page.on("dialog", confirm)
        navigations: list[str] = []
        page.on("framenavigated", lambda frame: navigations.append(frame.url))

        # Loads with the token and shows every plugin, running, with its facts.
        await page.goto(f"{bot.runtime['http_url']}/?token={bot.runtime['http_token']}")
        for name in ("dice", "api_base", "api_dependent", "dashboard_hostile"):
            await page.wait_for_selector(card(page, name, "running"), timeout=WAIT_MS)
        assert await page.text_content(f"{card(page, 'dice')} .state") == "running"
        await page.wait_for_selector('#live[data-live="yes"]', timeout=WAIT_MS)
        # The dependency graph: api_dependent below api_base.
        nested = (
            await page.locator("#deps li", has_text="api_base").locator("ul li").all_text_contents()
        )
        assert nested == ["api_dependent"]

        # Stop, confirmed in a dialog: the card changes without a reload.
        await page.click(f'{card(page, "dice")} button[data-action="stop"]')
        await page.wait_for_selector(card(page, "dice", "stopped"), timeout=WAIT_MS)
        assert dialogs == ["stop dice?"]
        assert (await bot.manage("status", {"plugin": "dice"}))["result"]["state"] == "stopped"

        # A violation, whose subject is an HTML tag, is listed as text.
        assert await bot.chat("!forbidden") == "published"
        await page.wait_for_selector("#violations li", timeout=WAIT_MS)
        listed = await page.text_content("#violations li")
        assert listed is not None
        assert FORBIDDEN_SUBJECT in listed
        assert await page.locator("#violations img").count() == 0

        # A crash shows up live with its reason, which is the plugin's text, shown as text.
        hostile = card(page, "dashboard_hostile")
        await bot.chat("!crash", timeout=15)
        await page.wait_for_selector(card(page, "dashboard_hostile", "crashed"), timeout=WAIT_MS)
        await shows_text(page, f"{hostile} .why", CRASH_TEXT)
        why = await page.text_content(f"{hostile} .why")
        assert why is not None
        assert "exit" in why
        assert await page.locator(f"{hostile} img, {hostile} script").count() == 0

        # The live log tail: the plugin's stderr, also as text.
        await page.click(f"{hostile} .logs summary")
        await shows_text(page, f"{hostile} .logs pre", CRASH_TEXT)
        assert await page.evaluate("window.__pwned") is None
        assert await page.locator("img").count() == 0

        # All of it without a reload: the page was navigated to once.
        assert len(navigations) == 1, navigations
        if os.environ.get("ROSEY_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
        else:
            await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

        # A phone-sized screen: nothing wider than the screen.
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.wait_for_function("document.documentElement.scrollWidth <= 390", timeout=WAIT_MS)
        assert problems == []


async def test_a_wrong_token_shows_no_data(tmp_path: Path) -> None:
    async with (
        run_bot(tmp_path, plugins_dirs=PLUGINS[:1], config=HTTP_ON) as bot,
        chromium(tmp_path) as context,
    ):
        page = await context.new_page()
        response = await page.goto(f"{bot.runtime['http_url']}/?token=wrong")
        assert response is not None
        assert response.status == 401
        assert "dice" not in await page.content()
        await asyncio.sleep(0)  # nothing else to wait for: the page is the refusal
