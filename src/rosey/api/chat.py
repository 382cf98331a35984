"""The chat face: ``!plugin ACTION [NAME] [N]`` from any connector.

Words become the action's request model (positional fields in order); actions that need an
admin are refused for everyone else, and each refusal is logged with who tried what. Replies
are split into chat-sized messages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rosey.api.action import Action, Permission
from rosey.api.actions import get_action
from rosey.api.render import error_text, result_lines
from rosey.errors import Forbidden, RoseyError
from rosey.router.parse import ParsedCommand
from rosey.router.router import Caller

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager

log = logging.getLogger("rosey.api")

PREFIX = "!plugin"
MAX_CHARS = 400
MAX_LINES = 15
MAX_MESSAGES = 8
#: Log lines shown in chat at most; the CLI shows any number.
CHAT_LOG_LINES = 20
_HELP_WORDS = ("help", "-h", "--help")


def is_admin(caller: Caller, admins: Sequence[str]) -> bool:
    """Whether the caller is in ``admins``, as ``platform:user`` or as plain ``user``."""
    return f"{caller.platform}:{caller.username}" in admins or caller.username in admins


async def handle_plugin_command(
    manager: PluginManager,
    parsed: ParsedCommand,
    caller: Caller,
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
            "refused: %s (rank %d) is not an admin and tried: %s %s",
            who,
            caller.rank,
            PREFIX,
            " ".join(args)[:200],
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


def chunk(
    lines: Sequence[str],
    *,
    max_chars: int = MAX_CHARS,
    max_lines: int = MAX_LINES,
    max_messages: int = MAX_MESSAGES,
) -> list[str]:
    """Pack lines into at most ``max_messages`` messages of ``max_chars`` and ``max_lines``.

    A longer line is cut into pieces; several messages are numbered ``[1/3] ``; what does not
    fit in ``max_messages`` is dropped and the last message says how many lines were.
    """
    room = max_chars - len(f"[{max_messages}/{max_messages}] ")
    pieces: list[str] = []
    for line in lines:
        pieces.extend([line[i : i + room] for i in range(0, len(line), room)] or [""])
    messages: list[list[str]] = []
    size = 0
    for piece in pieces:
        if not messages or len(messages[-1]) >= max_lines or size + len(piece) + 1 > room:
            messages.append([])
            size = 0
        messages[-1].append(piece)
        size += len(piece) + 1
    if len(messages) > max_messages:
        dropped = sum(len(m) for m in messages[max_messages:])
        messages = messages[:max_messages]
        last = messages[-1]
        # Make room for the note (its number grows as lines make way for it).
        while len(last) >= max_lines or sum(len(p) + 1 for p in last) + 40 > room:
            last.pop()
            dropped += 1
        last.append(f"… {dropped} more lines not shown")
    texts = ["\n".join(m) for m in messages] or [""]
    if len(texts) == 1:
        return texts
    return [f"[{i}/{len(texts)}] {text}" for i, text in enumerate(texts, 1)]
