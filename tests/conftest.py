"""Fixtures shared by all tests: a real nats-server per test, its log shown when a test fails."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from rosey.bus.server import EmbeddedServer
from rosey.sandbox.confine import Sandbox
from rosey.sandbox.host import detect_host

#: The reports of the phases run so far ("setup", "call"), stored on the test item.
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
#: The temporary folder ``pytest_configure`` made for this session (removed after a pass).
OWN_BASETEMP = pytest.StashKey[Path]()
#: This session's own ``XDG_RUNTIME_DIR`` and ``XDG_STATE_HOME`` (see ``pytest_configure``).
OWN_XDG = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """A temporary folder of this session's own, unless ``--basetemp`` names one.

    pytest's default, ``/tmp/pytest-of-<user>``, is shared by every session of the user and
    chmod-ed ``0700`` by each one that starts, which resets the ACL mask that lets the
    unprivileged test user through (``tests/privilege.py``): a session started meanwhile would
    fail another's unprivileged tests. It is removed after a passing run and kept for
    inspection after a failing one.
    """
    import os
    import tempfile

    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="rosey-pytest-")
        config.stash[OWN_BASETEMP] = Path(config.option.basetemp)
    # Every bot a test starts notes itself as "this user's last bot" for the CLI
    # (``rosey.api.client.user_record``): a folder of this session's own, so that the record
    # neither leaks to the real user nor lets a CLI test find another session's bot.
    xdg = Path(tempfile.mkdtemp(prefix="rosey-xdg-"))
    config.stash[OWN_XDG] = xdg
    for variable in ("XDG_RUNTIME_DIR", "XDG_STATE_HOME"):
        (xdg / variable).mkdir(mode=0o700)
        os.environ[variable] = str(xdg / variable)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(session.config.stash.get(OWN_XDG, "/nonexistent"), ignore_errors=True)
    folder = session.config.stash.get(OWN_BASETEMP, None)
    if folder is not None and exitstatus == 0:
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


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A sandbox on this host's cgroups (rlimits only where there are none); checked clean."""
    box = Sandbox(detect_host(), family=f"test{uuid.uuid4().hex[:10]}")
    box.open()
    try:
        yield box
    finally:
        dirs = box.cgroup_dirs
        box.close()
        assert [d for d in dirs if d.exists()] == []
