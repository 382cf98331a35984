"""Every error Rosey raises on purpose, in one tree.

Errors carry typed fields and build their own message from them, so the chat, CLI and NATS
faces can render the fields and map the class to the management API's ``error.code`` without
parsing strings. Third-party errors (nats-py, OS, pydantic) are translated into these at one
boundary each: ``rosey.bus`` for NATS, ``rosey.sandbox`` for processes, the model modules for
validation.

```
RoseyError
├── FileError ···························· a file is wrong (file, field, problem) code bad_request
│   ├── ConfigError ······················ config/plugins.yaml or a flag
│   └── ManifestError ···················· a plugin.yaml
├── SubjectError ························· a subject token holds '.', '*', '>' or whitespace
├── DecodeError ·························· a bus message body is not the JSON we expect
├── BrokerError ·························· the embedded nats-server could not start
├── BusError ····························· the NATS connection failed us
│   ├── BusUnavailable ··················· no server could be reached in time
│   ├── RequestTimeout ··················· a request got no reply in time
│   ├── NoResponders ····················· nobody listens on the subject
│   └── BusPermissionDenied ·············· the broker refused a publish or subscribe
├── BadRequest ··························· an API request is malformed         code bad_request
├── InvalidTransition ···················· a lifecycle event does not apply    code invalid_state
└── PluginError ·························· about one named plugin
    ├── PluginNotFound ··················· no such plugin                      code not_found
    ├── InvalidState ····················· not possible in the plugin's state  code invalid_state
    ├── Forbidden ························ the caller may not do this          code forbidden
    ├── DependencyError ·················· dependencies prevent it            code dependency
    │   ├── MissingDependency
    │   ├── DependencyNotRunning
    │   ├── DependencyBlocked
    │   └── DependencyCycle
    ├── StartFailed ······················ the process did not become ready   code internal
    │   ├── StartTimeout
    │   └── ExitedDuringStart
    └── DataQuotaExceeded ················ its data folder holds more than limits.data_mb
```

This module is imported by plugin processes: it must stay free of heavy imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

__all__ = [
    "ERROR_CODES",
    "BadRequest",
    "BrokerError",
    "BusError",
    "BusPermissionDenied",
    "BusUnavailable",
    "ConfigError",
    "DataQuotaExceeded",
    "DecodeError",
    "DependencyBlocked",
    "DependencyCycle",
    "DependencyError",
    "DependencyNotRunning",
    "ErrorCode",
    "ExitedDuringStart",
    "FileError",
    "Forbidden",
    "InvalidState",
    "InvalidTransition",
    "ManifestError",
    "MissingDependency",
    "NoResponders",
    "PluginError",
    "PluginNotFound",
    "RequestTimeout",
    "RoseyError",
    "StartFailed",
    "StartTimeout",
    "SubjectError",
]


def _tail(lines: Sequence[str], prefix: str = "\n  | ") -> str:
    return "".join(prefix + line for line in lines)


#: The management API's ``error.code`` values (DESIGN 2.6): the one list. ``rosey.protocol.wire``
#: types the envelope with it, the NATS face checks against it.
ErrorCode = Literal[
    "not_found", "invalid_state", "dependency", "forbidden", "bad_request", "internal"
]
ERROR_CODES: frozenset[str] = frozenset(get_args(ErrorCode))


class RoseyError(Exception):
    """Base of every error Rosey raises on purpose."""

    #: The management API's ``error.code`` for this class (DESIGN 2.6).
    code: ErrorCode = "internal"

    @property
    def message(self) -> str:
        return str(self)


class FileError(RoseyError):
    """A file we read (or the flags standing in for one) is not valid: where, field, problem.

    The shape both ``ConfigError`` and ``ManifestError`` take; catch those, not this.
    """

    code: ErrorCode = "bad_request"

    def __init__(self, file: str, field: str, problem: str) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {problem}")


class ConfigError(FileError):
    """The bot configuration (file or flags) is not valid."""

    @property
    def source(self) -> str:
        """The file or flag at fault (this class's older name for ``file``)."""
        return self.file


class ManifestError(FileError):
    """A plugin.yaml (or the plugin it describes) is not valid."""


class SubjectError(RoseyError, ValueError):
    """A token given to a subject builder cannot be part of a NATS subject."""

    code: ErrorCode = "bad_request"

    def __init__(self, token: str, problem: str) -> None:
        self.token = token
        self.problem = problem
        super().__init__(f"subject token {token!r}: {problem}")


class DecodeError(RoseyError, ValueError):
    """A message body on the bus is not what its subject promises."""

    code: ErrorCode = "bad_request"

    def __init__(self, subject: str, problem: str) -> None:
        self.subject = subject
        self.problem = problem
        super().__init__(f"bad message on {subject}: {problem}")


class BrokerError(RoseyError):
    """The embedded nats-server could not be started or did not become ready."""

    def __init__(self, problem: str, log_tail: Sequence[str] = ()) -> None:
        self.problem = problem
        self.log_tail = list(log_tail)
        text = f"embedded nats-server: {problem}"
        if self.log_tail:
            text += "\n  server log:" + _tail(self.log_tail)
        super().__init__(text)


class BusError(RoseyError):
    """The NATS connection failed to do what was asked."""


class BusUnavailable(BusError):
    """No NATS server answered at the URL within the time allowed."""

    def __init__(self, url: str, seconds: float, cause: str = "") -> None:
        self.url = url
        self.seconds = seconds
        self.cause = cause
        text = f"could not reach a NATS server at {url} within {seconds:g} s"
        if cause:
            text += f" ({cause})"
        super().__init__(text + "; is it running, and is the URL right?")


class RequestTimeout(BusError):
    """A request got no reply before its deadline."""

    def __init__(self, subject: str, seconds: float) -> None:
        self.subject = subject
        self.seconds = seconds
        super().__init__(f"no reply on {subject} within {seconds:g} s")


class NoResponders(BusError):
    """A request was sent to a subject nobody listens on."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"nobody is listening on {subject}")


class BusPermissionDenied(BusError):
    """The broker refused an operation because of this client's permissions."""

    code: ErrorCode = "forbidden"

    def __init__(self, subject: str, operation: str) -> None:
        self.subject = subject
        self.operation = operation
        super().__init__(f"the broker refused to {operation} {subject!r}: permission denied")


class BadRequest(RoseyError):
    """A management request is malformed: bad JSON, wrong types, unknown action."""

    code: ErrorCode = "bad_request"

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


class InvalidTransition(RoseyError):
    """A lifecycle event that the state table (``rosey.lifecycle.states``) has no entry for.

    Raised by the pure state machine, which does not know the plugin's name: the manager
    either prevents it (checks first) or translates it into ``InvalidState`` for the caller.
    """

    code: ErrorCode = "invalid_state"

    def __init__(self, state: str, event: str, allowed: Sequence[str] = ()) -> None:
        self.state = state
        self.event = event
        self.allowed = list(allowed)
        text = f"lifecycle event {str(event)!r} does not apply in state {str(state)!r}"
        if self.allowed:
            text += f"; events allowed in {state!s}: {', '.join(map(str, self.allowed))}"
        else:
            text += f"; no event is allowed in {state!s}"
        super().__init__(text)


class PluginError(RoseyError):
    """Something about one named plugin."""

    def __init__(self, plugin: str, text: str) -> None:
        self.plugin = plugin
        super().__init__(text)


class PluginNotFound(PluginError):
    code: ErrorCode = "not_found"

    def __init__(self, plugin: str, known: Sequence[str] = ()) -> None:
        self.known = sorted(known)
        text = f"no plugin named {plugin!r}"
        if self.known:
            text += f"; known plugins: {', '.join(self.known)}"
        super().__init__(plugin, text)


class InvalidState(PluginError):
    code: ErrorCode = "invalid_state"

    def __init__(self, plugin: str, state: str, action: str, reason: str = "") -> None:
        self.state = state
        self.action = action
        self.reason = reason
        text = f"cannot {action} plugin {plugin!r} while it is {state}"
        if reason:
            text += f": {reason}"
        super().__init__(plugin, text)


class Forbidden(PluginError):
    code: ErrorCode = "forbidden"

    def __init__(self, plugin: str, user: str, action: str) -> None:
        self.user = user
        self.action = action
        super().__init__(
            plugin, f"{user} is not allowed to {action} plugins (only admins may); not done"
        )


class DependencyError(PluginError):
    code: ErrorCode = "dependency"


class MissingDependency(DependencyError):
    def __init__(self, plugin: str, missing: Sequence[str]) -> None:
        self.missing = list(missing)
        super().__init__(
            plugin,
            f"plugin {plugin!r} depends on {', '.join(map(repr, self.missing))}, "
            "which is not installed",
        )


class DependencyNotRunning(DependencyError):
    def __init__(self, plugin: str, dependency: str, state: str) -> None:
        self.dependency = dependency
        self.state = state
        super().__init__(
            plugin,
            f"plugin {plugin!r} needs {dependency!r} running first, but it is {state}",
        )


class DependencyBlocked(DependencyError):
    """A dependency exists but can never start (it is missing its own, or on a cycle)."""

    def __init__(self, plugin: str, dependency: str, reason: str) -> None:
        self.dependency = dependency
        self.reason = reason
        super().__init__(plugin, f"plugin {plugin!r} cannot start: {reason}")


class DependencyCycle(DependencyError):
    def __init__(self, plugin: str, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(plugin, "dependency cycle: " + " → ".join(self.cycle))


class StartFailed(PluginError):
    """The plugin process did not become ready."""

    def __init__(self, plugin: str, text: str, stderr_tail: Sequence[str] = ()) -> None:
        self.stderr_tail = list(stderr_tail)
        if self.stderr_tail:
            text += "; last stderr lines:" + _tail(self.stderr_tail)
        super().__init__(plugin, text)


class StartTimeout(StartFailed):
    def __init__(self, plugin: str, seconds: float, stderr_tail: Sequence[str] = ()) -> None:
        self.seconds = seconds
        super().__init__(
            plugin, f"plugin {plugin!r} was not ready within {seconds:g} s", stderr_tail
        )


class ExitedDuringStart(StartFailed):
    def __init__(self, plugin: str, exit_code: int, stderr_tail: Sequence[str] = ()) -> None:
        self.exit_code = exit_code
        super().__init__(
            plugin,
            f"plugin {plugin!r} exited during start ({describe_exit(exit_code)})",
            stderr_tail,
        )


class DataQuotaExceeded(PluginError):
    """A plugin's data folder already holds more than its quota, so it is not started."""

    def __init__(self, plugin: str, folder: str, used_mb: int, quota_mb: int) -> None:
        self.folder = folder
        self.used_mb = used_mb
        self.quota_mb = quota_mb
        super().__init__(
            plugin,
            f"data folder {folder} of plugin {plugin!r} over its quota of {quota_mb} MB "
            f"(it holds {used_mb} MB): delete files there, or raise limits.data_mb "
            "(up to the operator's limits_max.data_mb)",
        )


def describe_exit(returncode: int) -> str:
    """``exit 1`` or ``signal 9 (SIGKILL)`` for a subprocess return code."""
    if returncode >= 0:
        return f"exit {returncode}"
    import signal

    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"
    return f"signal {-returncode} ({name})"
