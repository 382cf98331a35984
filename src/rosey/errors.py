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
│   │   └── ConfigProblems ··············· all of a config file's problems at once
│   └── ManifestError ···················· a plugin.yaml
├── SubjectError ························· a subject token holds '.', '*', '>' or whitespace
├── DecodeError ·························· a bus message body is not the JSON we expect
├── BrokerError ·························· the embedded nats-server could not start
├── BusError ····························· the NATS connection failed us
│   ├── BusUnavailable ··················· no server could be reached in time
│   ├── RequestTimeout ··················· a request got no reply in time
│   ├── NoResponders ····················· nobody listens on the subject
│   └── BusPermissionDenied ·············· the broker refused a publish or subscribe
│       └── MissingGrant ················· ... a plugin's, naming the grant it needs
├── BadRequest ··························· an API request is malformed         code bad_request
│   └── BodyTooLarge ····················· an HTTP request body over the limit (HTTP: 413)
├── EnvironmentBuildFailed ··············· requirements cannot be installed   code bad_request
├── SourceError ·························· a plugin source cannot be used     code bad_request
│   └── SourceNotFound ··················· no such file or folder            code not_found
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
    ├── RolledBack ······················· a reload's new instance failed; the old one serves
    │                                        (or a restart refused a bad manifest) code rolled_back
    ├── DataQuotaExceeded ················ its data folder holds more than limits.data_mb
    ├── EnvironmentNotBuilt ·············· its environment is not built yet   code invalid_state
    ├── InstallRefused ··················· install, update... refused         code invalid_state
    └── ConfirmationNeeded ··············· grants need a yes    code confirmation_needed
```

This module is imported by plugin processes: it must stay free of heavy imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

__all__ = [
    "ERROR_CODES",
    "BadRequest",
    "BodyTooLarge",
    "BrokerError",
    "BusError",
    "BusPermissionDenied",
    "BusUnavailable",
    "ConfigError",
    "ConfigProblems",
    "ConfirmationNeeded",
    "DataQuotaExceeded",
    "DecodeError",
    "DependencyBlocked",
    "DependencyCycle",
    "DependencyError",
    "DependencyNotRunning",
    "EnvironmentBuildFailed",
    "EnvironmentNotBuilt",
    "ErrorCode",
    "ExitedDuringStart",
    "FileError",
    "Forbidden",
    "InstallRefused",
    "InvalidState",
    "InvalidTransition",
    "ManifestError",
    "MissingDependency",
    "MissingGrant",
    "NoResponders",
    "PluginError",
    "PluginNotFound",
    "RequestTimeout",
    "RolledBack",
    "RoseyError",
    "SourceError",
    "SourceNotFound",
    "StartFailed",
    "StartTimeout",
    "SubjectError",
]


def _tail(lines: Sequence[str], prefix: str = "\n  | ") -> str:
    return "".join(prefix + line for line in lines)


#: The management API's ``error.code`` values (DESIGN 2.6): the one list. ``rosey.protocol.wire``
#: types the envelope with it, the NATS face checks against it.
ErrorCode = Literal[
    "not_found",
    "invalid_state",
    "dependency",
    "forbidden",
    "bad_request",
    "rolled_back",
    "internal",
    "confirmation_needed",
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

    def __init__(self, file: str, field: str, problem: str, *, line: int | None = None) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        #: The line of the file the field is on, when known (``file:LINE:``, as compilers say).
        self.line = line
        where = f"{file}:{line}" if line is not None else file
        where = f"{where}: {field}" if field else where
        super().__init__(f"{where}: {problem}")


class ConfigError(FileError):
    """The bot configuration (file or flags) is not valid."""

    @property
    def source(self) -> str:
        """The file or flag at fault (this class's older name for ``file``)."""
        return self.file


class ConfigProblems(ConfigError):
    """Every problem of one config file at once, one line each; the fields are the first's."""

    def __init__(self, problems: Sequence[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.file, first.field, first.problem, line=first.line)
        self.problems = tuple(problems)
        self.args = ("\n".join(str(problem) for problem in self.problems),)


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


class MissingGrant(BusPermissionDenied):
    """The broker refused a plugin's publish, subscribe, call or storage use: the grant it
    lacks (``grant``, from ``rosey.plugins.grant_needed``; None when no grant allows it).

    Raised by the plugin's runtime at once, instead of the timeout the refusal looks like.
    """

    def __init__(self, plugin: str, subject: str, operation: str, grant: str | None) -> None:
        super().__init__(subject, operation)
        self.plugin = plugin
        self.grant = grant
        what = f"plugin {plugin!r} may not {operation} {subject!r}"
        if grant is None:
            text = f"{what}: no grant allows that (see docs/plugins/AUTHORING.md, section 4)"
        else:
            text = f"{what}: it needs the grant `{grant}` in plugin.yaml (permissions: [{grant}])"
        self.args = (text,)


class BadRequest(RoseyError):
    """A management request is malformed: bad JSON, wrong types, unknown action."""

    code: ErrorCode = "bad_request"

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


class BodyTooLarge(BadRequest):
    """An HTTP request's body is over the face's limit (``length`` None: not declared)."""

    def __init__(self, limit: int, length: int | None = None) -> None:
        self.limit = limit
        self.length = length
        sent = f" ({length} bytes declared)" if length is not None else ""
        super().__init__(f"the body is too large{sent}: at most {limit} bytes")


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


class RolledBack(PluginError):
    """A change of a running plugin did not take: the instance that was serving still is.

    ``action`` is ``reload`` (the new instance was killed: invalid manifest, import error,
    crash, not ready, unhealthy in probation) or ``restart`` (refused before stopping anything:
    the manifest on disk is not valid); ``stage`` says where it failed.
    """

    code: ErrorCode = "rolled_back"

    def __init__(self, plugin: str, action: str, stage: str, reason: str) -> None:
        self.action = action
        self.stage = stage
        self.reason = reason
        verb = "rolled back" if action == "reload" else "refused"
        super().__init__(
            plugin,
            f"{action} of plugin {plugin!r} {verb} ({stage}): {reason}; "
            "the running instance keeps serving",
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


class SourceError(RoseyError):
    """A plugin source (a folder, a ``.tar.gz`` or a ``.zip``) cannot be used: which, and why."""

    code: ErrorCode = "bad_request"

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"plugin source {source}: {problem}; nothing was installed")


class SourceNotFound(SourceError):
    """The source path does not exist on the bot's host."""

    code: ErrorCode = "not_found"

    def __init__(self, source: str) -> None:
        super().__init__(source, "no such file or folder (on the bot's host)")


class InstallRefused(PluginError):
    """Install, update, rollback or remove was refused before anything changed: every reason
    (the source's manifest, a taken name or command, the dependency graph, the version rule,
    ``requires_rosey``, a failed environment build, no kept version)."""

    code: ErrorCode = "invalid_state"

    def __init__(self, plugin: str, action: str, problems: Sequence[str]) -> None:
        self.action = action
        self.problems = list(problems)
        what = f"{action} of plugin {plugin!r}" if plugin else action  # "": not known yet
        super().__init__(plugin, f"{what} refused, nothing was changed: " + "; ".join(problems))


class ConfirmationNeeded(PluginError):
    """The grants a plugin asks for must be accepted first (``yes``); ``text`` shows them."""

    code: ErrorCode = "confirmation_needed"

    def __init__(self, plugin: str, action: str, text: str) -> None:
        self.action = action
        self.text = text
        super().__init__(
            plugin,
            f"{text}\nnothing was done: {action} again with yes to accept "
            "(CLI: --yes, or answer y at a terminal)",
        )


class EnvironmentBuildFailed(RoseyError):
    """A plugin's own Python environment could not be built (``rosey.sandbox.environments``):
    the requirements the installer named (none when it named none of them) and its reason."""

    code: ErrorCode = "bad_request"

    def __init__(
        self, requirements: Sequence[str], named: Sequence[str], reason: str, tool: str
    ) -> None:
        self.requirements = list(requirements)
        self.named = list(named)
        self.reason = reason
        self.tool = tool
        asked = ", ".join(self.requirements)
        if len(self.named) == 1:
            culprit = f"requirement {self.named[0]!r} cannot be installed"
        elif self.named:
            quoted = ", ".join(repr(text) for text in self.named)
            culprit = f"requirements {quoted} cannot be installed together"
        else:
            culprit = "the installer failed"
        super().__init__(
            f"cannot build the Python environment for requirements [{asked}]: {culprit} "
            f"({tool}: {reason})"
        )

    @property
    def requirement(self) -> str | None:
        """The first requirement the installer named, if any."""
        return self.named[0] if self.named else None


class EnvironmentNotBuilt(PluginError):
    """A plugin with ``requirements`` whose environment is not built: it does not start (an
    environment is built by ``rosey plugin validate`` or install, never at start)."""

    code: ErrorCode = "invalid_state"

    def __init__(self, plugin: str, requirements: Sequence[str], command: str) -> None:
        self.requirements = list(requirements)
        self.command = command
        super().__init__(
            plugin,
            f"plugin {plugin!r}: its Python environment for requirements "
            f"[{', '.join(self.requirements)}] is not built; build it with: {command}",
        )
