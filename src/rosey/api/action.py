"""What a management action is: one request model, one permission, one behaviour, one help text.

Every face (chat, NATS, CLI) turns its input into the action's request model and calls
``execute``; none of them holds behaviour of its own. The request model forbids unknown fields;
a request that does not fit it is a ``BadRequest`` naming the field, with the same words on
every face. Request models are ``rosey.api.requests`` models, not pydantic's: a running bot
does not load pydantic to answer them (issue 13).
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from rosey.api.requests import Invalid, Problem, Request, field
from rosey.errors import BadRequest

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager


class Permission(enum.StrEnum):
    """Who may run an action from chat (the NATS face is guarded by broker permissions)."""

    ANYONE = "anyone"
    ADMIN = "admin"


__all__ = ["NAME_MAX", "Action", "Permission", "PluginRequest", "Request", "action", "field"]

#: The longest plugin name a request carries (at least 1 character). Any string is accepted
#: here: an unknown name is the manager's ``not_found``, not a malformed request.
NAME_MAX = 64


class PluginRequest(Request):
    """A request about one plugin: ``{"plugin": NAME}``."""

    plugin: str = field(min_length=1, max_length=NAME_MAX)


R = TypeVar("R", bound=Request)


@dataclass(frozen=True)
class Action(Generic[R]):
    """One management action. Build it with ``action(...)`` in the action's own module."""

    name: str
    request: type[R]
    run: Callable[[PluginManager, R], Awaitable[Any]]
    #: Who may run it from chat.
    permission: Permission
    #: Whether it changes what runs (start, stop, ...) rather than only reporting.
    mutating: bool
    #: Request fields that chat and CLI take as positional words, in order.
    positional: tuple[str, ...]
    #: Metavariables for the positional fields in usage lines (``NAME``, ``N``).
    metavars: Mapping[str, str]
    #: The help text shown by every face: the first line is the summary.
    help: str
    #: Where the action sits in usage listings.
    order: int
    #: The result shape (a TypedDict), for documentation and type checking.
    result: type
    #: How a refusal names it: "... is not allowed to VERB plugins".
    verb: str

    @property
    def summary(self) -> str:
        return self.help.splitlines()[0] if self.help else self.name

    @property
    def usage(self) -> str:
        """``logs NAME [N]``: the positional words, optional ones in brackets."""
        words = [self.name]
        for name in self.positional:
            metavar = self.metavars.get(name, name.upper())
            required = self.request.model_fields[name].is_required()
            words.append(metavar if required else f"[{metavar}]")
        return " ".join(words)

    def parse(self, data: Mapping[str, Any], *, strict: bool) -> R:
        """The request model for ``data``, or ``BadRequest`` naming the field.

        ``strict`` (the NATS face) takes JSON types as they are; chat and CLI words are strings,
        so they are parsed leniently ("20" is 20).
        """
        try:
            return self.request.model_validate(dict(data), strict=strict)
        except Invalid as exc:
            raise BadRequest(describe(exc.problems, self)) from None

    async def execute(
        self, manager: PluginManager, data: Mapping[str, Any], *, strict: bool
    ) -> Any:
        """Parse ``data`` and run the action; errors are ``rosey.errors`` with their ``.code``."""
        return await self.run(manager, self.parse(data, strict=strict))


def describe(problems: list[Problem], action: Action[Any]) -> str:
    """The problems in words: ``field 'lines': input should be greater than or equal to 1
    (got 0)``; one per problem, in the order found."""
    allowed = ", ".join(action.request.model_fields) or "none"
    words: list[str] = []
    for problem in problems:
        name, kind = problem.field, problem.kind
        if kind == "extra_forbidden":
            words.append(f"field {name!r} is not known to {action.name}; fields: {allowed}")
        elif kind == "missing":
            words.append(f"field {name!r} is required ({action.name} takes: {allowed})")
        elif kind == "model_type":
            words.append(f"the body of {action.name} must be a JSON object")
        else:
            message = problem.message
            message = message[0].lower() + message[1:] if message else kind
            words.append(f"field {name!r}: {message} (got {_short(problem.value)})")
    return "; ".join(words)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def action(
    *,
    name: str,
    request: type[R],
    run: Callable[[PluginManager, R], Awaitable[Any]],
    result: type,
    mutating: bool,
    permission: Permission | None = None,
    positional: tuple[str, ...] = (),
    metavars: Mapping[str, str] | None = None,
    order: int = 100,
    help: str | None = None,
    verb: str | None = None,
) -> Action[R]:
    """Declare an action; its help text defaults to the docstring of ``run``.

    The permission defaults to ``ADMIN`` for mutating actions and ``ANYONE`` otherwise.
    """
    text = inspect.cleandoc(help if help is not None else (run.__doc__ or name))
    return Action(
        name=name,
        request=request,
        run=run,
        permission=permission or (Permission.ADMIN if mutating else Permission.ANYONE),
        mutating=mutating,
        positional=positional,
        metavars={"plugin": "NAME", **(metavars or {})},
        help=text,
        order=order,
        result=result,
        verb=verb or name,
    )
