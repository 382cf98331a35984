"""Fixtures shared by all tests: a real nats-server per test, its log shown when a test fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from pathlib import Path

import pytest

from rosey.bus.server import EmbeddedServer

#: The reports of the phases run so far ("setup", "call"), stored on the test item.
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
#: The temporary folder ``pytest_configure`` made for this session (removed after a pass).
OWN_BASETEMP = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """A temporary folder of this session's own, unless ``--basetemp`` names one.

    pytest's default, ``/tmp/pytest-of-<user>``, is shared by every session of the user and
    chmod-ed ``0700`` by each one that starts, which resets the ACL mask that lets the
    unprivileged test user through (``tests/privilege.py``): a session started meanwhile would
    fail another's unprivileged tests. It is removed after a passing run and kept for
    inspection after a failing one.
    """
    if config.option.basetemp is None:
        import tempfile

        config.option.basetemp = tempfile.mkdtemp(prefix="rosey-pytest-")
        config.stash[OWN_BASETEMP] = Path(config.option.basetemp)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    folder = session.config.stash.get(OWN_BASETEMP, None)
    if folder is not None and exitstatus == 0:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures can see in teardown if a test failed."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def has_failed(request: pytest.FixtureRequest) -> bool:
    """Whether the setup or the call of the requesting test failed."""
    reports = request.node.stash.get(PHASE_REPORTS, {})
    return any(report.failed for report in reports.values())


@pytest.fixture
async def nats_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[EmbeddedServer]:
    """A started embedded nats-server (JetStream on, no auth), fresh for each test.

    A start failure raises ``BrokerError``, whose message holds the server's log tail; when the
    test fails, teardown prints the tail too (pytest shows it as "Captured stdout teardown").
    """
    server = EmbeddedServer(tmp_path / "nats")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        if has_failed(request):
            print(f"--- last lines of {server.log_path} ---")
            print("\n".join(server.log_tail(40)))


@pytest.fixture
def nats_url(nats_server: EmbeddedServer) -> str:
    """The URL of the test's embedded nats-server (``nats://127.0.0.1:PORT``)."""
    return nats_server.url


@pytest.fixture(params=["root", "unprivileged"])
def bot_privilege(request: pytest.FixtureRequest) -> str:
    """Who runs the bot: ``"root"`` (as here) or ``"unprivileged"`` (the user ``rosey-test``).

    Hostile-plugin tests take it and pass ``unprivileged=(bot_privilege == "unprivileged")`` to
    ``run_bot``, so every protection is shown to hold for both.
    """
    return str(request.param)
