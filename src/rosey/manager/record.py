"""What the manager knows about one plugin, apart from its process: the record status reads.

Counters (crashes, restarts, broker violations), the last exit and error, the crash window,
the backoff's attempt and the command error window. Changed only through the methods here and
by the supervisor's life task (``rosey.manager.life``), read by STATUS
(``rosey.manager.status``) and the faces. No process, no task, no I/O.
"""

from __future__ import annotations

import time

from rosey.config import BotConfig
from rosey.lifecycle.health import CommandWindow, ErrorRatePolicy
from rosey.lifecycle.policy import Backoff, CrashWindow
from rosey.lifecycle.states import INITIAL_STATE, UP, State
from rosey.plugins.discovery import DiscoveredPlugin
from rosey.protocol.manifest import Manifest
from rosey.sandbox.stats import TreeSample

__all__ = ["PluginRecord"]


class PluginRecord:
    """One plugin's state, counters and last words."""

    def __init__(self, plugin: DiscoveredPlugin, manifest: Manifest, config: BotConfig) -> None:
        self.name = manifest.name
        self.folder = plugin.folder
        #: The manifest it runs with (the config's entry and the operator's bounds applied).
        self.manifest = manifest
        self.state: State = INITIAL_STATE
        self.enabled = True
        self.crash_count = 0
        self.restart_count = 0
        #: Permission violations the broker reported for this plugin (security monitor).
        self.violations = 0
        #: The sample the last status was built from (faces show its thread/file counts).
        self.last_sample: TreeSample | None = None
        self.last_exit_code: int | None = None
        self.last_error: str | None = None
        #: The last_error is a dependency problem (cleared once the plugin starts).
        self.dependency_error = False
        self.next_restart_at: float | None = None
        self.crashes = CrashWindow(config.max_crash_count, config.crash_window_s)
        self.backoff = Backoff(**config.backoff.model_dump())
        self.error_policy = ErrorRatePolicy(**config.error_rate.model_dump())
        self.commands = CommandWindow(self.error_policy.window_s)
        self.health_problems: dict[str, str] = {}
        #: The dependency whose stop took this plugin down while it ran: it comes back
        #: once that dependency does (``rosey.manager.changes``); None otherwise.
        self.taken_down_by: str | None = None
        #: The backoff's attempt number (``Backoff.schedule``).
        self._attempt = 0

    @property
    def error_rate(self) -> float:
        return round(self.commands.rate(time.monotonic()), 3)

    def _count_restart(self) -> None:
        """One more restart (an operator's, or the restart policy's after the backoff)."""
        self.restart_count += 1

    def record_violation(self, detail: str = "") -> None:
        """The broker refused one of its publishes or subscriptions (security monitor);
        ``detail`` (which grant it needs) becomes the last_error of a plugin that runs, for
        status to show (a stopped or disabled one keeps the reason it is not running)."""
        self.violations += 1
        if detail and self.state in UP:
            self.last_error = detail

    def _record_crash(self, now: float) -> bool:
        """One more crash at ``now``; whether the crash window is exceeded (a crash loop)."""
        self.crash_count += 1
        self.crashes = self.crashes.record(now)
        return self.crashes.exceeded

    def _clear_history(self) -> None:
        """Crash window, crash count, backoff and error window start over (``enable``)."""
        self.crashes = self.crashes.cleared()
        self.crash_count = 0
        self._attempt = 0
        self.commands.clear()
