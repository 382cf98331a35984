"""The chat face: ``!plugin ACTION [NAME] [N]`` from any connector.

Words become the action's request model (positional fields in order); actions that need an
admin are refused for everyone else, and each refusal is logged with who tried what. Replies
are cleaned and split into chat-sized messages by ``rosey.router.split.chunk``, the mechanism
plugin replies go through too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rosey.api.action import Action, Permission
from rosey.api.actions import get_action
from rosey.api.render import error_text, result_lines
from rosey.errors import Forbidden, RoseyError
from rosey.protocol.admins import ChatCaller, parse_admin
from rosey.protocol.admins import is_admin as admin_rule
from rosey.protocol.text import clean
from rosey.router.parse import ParsedCommand
from rosey.router.split import chunk

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager

log = logging.getLogger("rosey.api")

PREFIX = "!plugin"
#: Log lines shown in chat at most; the CLI shows any number.
CHAT_LOG_LINES = 20
_HELP_WORDS = ("help", "-h", "--help")


def is_admin(caller: ChatCaller, admins: Sequence[str]) -> bool:
    """Whether an ``admins`` entry matches the caller (rules: ``rosey.protocol.admins``).

    ``platform:user`` matches that platform and user exactly, never a guest; ``platform:rank>=N``
    matches a rank of N or more on that platform. The config refuses any other entry; one that
    got here anyway matches nobody.
    """
    entries = []
    for text in admins:
        try:
            entries.append(parse_admin(text))
        except ValueError:
            log.error("admins entry %r ignored: not platform:user or platform:rank>=N", text)
    return admin_rule(caller, entries)


async def handle_plugin_command(
    manager: PluginManager,
    parsed: ParsedCommand,
    caller: ChatCaller,
    admins: Sequence[str],
    *,
    open_reads: bool = True,
) -> list[str]:
    """The reply to ``!plugin ...``, as one or more chat messages.

    ``open_reads`` False (config ``security.read_access: admins``) makes every action but
    ``help`` admin-only.
    """
    args = list(parsed.args)
    word = args[0].lower() if args else "help"
    try:
        action = get_action("help" if word in _HELP_WORDS else word)
    except RoseyError as exc:
        return chunk([f"{PREFIX}: {error_text(exc.code, str(exc))}", f"try {PREFIX} help"])
    words = args[1:]
    required = sum(1 for f in action.positional if action.request.model_fields[f].is_required())
    if not required <= len(words) <= len(action.positional):
        return [f"usage: {PREFIX} {action.usage}"]
    admin_only = action.permission is Permission.ADMIN or (not open_reads and action.name != "help")
    if admin_only and not is_admin(caller, admins):
        who = f"{caller.platform}:{caller.username}"
        log.warning(
            "refused: %s (rank %d%s) is not an admin and tried: %s %s",
            who,
            caller.rank,
            ", guest" if caller.guest else "",
            PREFIX,
            clean(" ".join(args)[:200], one_line=True),  # typed by anyone: no escapes in logs
        )
        refusal = Forbidden(words[0] if words else "", who, action.verb)
        return [f"{PREFIX} {action.name}: {error_text(refusal.code, str(refusal))}"]
    return chunk(await _run(manager, action, words))


async def _run(manager: PluginManager, action: Action[Any], words: list[str]) -> list[str]:
    try:
        result = await action.execute(
            manager, dict(zip(action.positional, words, strict=False)), strict=False
        )
    except RoseyError as exc:
        return [f"{PREFIX} {action.name}: {error_text(exc.code, str(exc))}"]
    except Exception as exc:
        log.exception("%s %s failed", PREFIX, " ".join([action.name, *words]))
        return [f"{PREFIX} {action.name}: {error_text('internal', type(exc).__name__)}"]
    lines = result_lines(action.name, action.mutating, result, prefix=PREFIX)
    if action.name == "logs" and len(lines) > CHAT_LOG_LINES:
        shown = len(lines) - CHAT_LOG_LINES
        lines = [
            f"(the last {CHAT_LOG_LINES} of {len(lines)} lines; {shown} more with "
            f"'rosey plugin logs {result['plugin']} -n {len(lines)}')",
            *lines[-CHAT_LOG_LINES:],
        ]
    return lines
