"""Text for chat: cleaned, cut into chat-sized messages, capped in total. Pure.

The one mechanism for everything the bot says in chat: plugin replies (the router) and
``!plugin`` replies (the chat face). A chat network takes a few hundred characters per
message and a flood of messages gets the bot kicked, so a reply becomes at most
``max_messages`` messages of at most ``max_chars`` characters and ``max_lines`` lines; what
does not fit is dropped and the last message says how much. Every line is passed through
``rosey.protocol.text.clean`` first (plugin text may hold terminal escape sequences), before
it is measured, so a message stays within its size once sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from rosey.protocol.text import clean

__all__ = ["MAX_CHARS", "MAX_LINES", "MAX_MESSAGES", "chunk"]

MAX_CHARS = 400
MAX_LINES = 15
MAX_MESSAGES = 8
#: Room the truncation note needs on the last message's last line.
_NOTE_ROOM = 60


def chunk(
    lines: Iterable[str],
    *,
    max_chars: int = MAX_CHARS,
    max_lines: int = MAX_LINES,
    max_messages: int = MAX_MESSAGES,
) -> list[str]:
    """Pack ``lines`` into at most ``max_messages`` messages of ``max_chars`` and ``max_lines``.

    A longer line is cut into pieces; several messages are numbered ``[1/3] ``; what does not
    fit is dropped and the last message ends with ``… (truncated, X more characters)`` (and
    how many lines, when more than one). Only what can be shown is cleaned and cut: a 1 MB
    reply costs a few slices, not a million list items.
    """
    room = max_chars - len(f"[{max_messages}/{max_messages}] ")
    if isinstance(lines, list) and len(lines) == 1 and len(lines[0]) <= room:
        # The common reply, one short line: no pieces to pack (a tenth of the cost).
        line = clean(lines[0])
        if len(line) <= room and "\n" not in line:
            return [line]
    budget = max_messages * max_lines
    # (piece, whether it starts a line of the input)
    pieces: list[tuple[str, bool]] = []
    rest_lines = rest_chars = 0
    source = iter(lines)
    for line in source:
        for part in clean(line).split("\n"):
            cut = [part[i : i + room] for i in range(0, len(part), room)] or [""]
            pieces.extend((piece, i == 0) for i, piece in enumerate(cut))
        if len(pieces) > budget:
            for unseen in source:  # not even cleaned: counted as they came
                rest_lines += 1
                rest_chars += len(unseen)
            break
    messages: list[list[tuple[str, bool]]] = []
    size = 0
    for piece in pieces:
        text = piece[0]
        if not messages or len(messages[-1]) >= max_lines or size + len(text) + 1 > room:
            messages.append([])
            size = 0
        messages[-1].append(piece)
        size += len(text) + 1
    if len(messages) > max_messages or rest_lines:
        dropped = [p for m in messages[max_messages:] for p in m]
        messages = messages[:max_messages]
        last = messages[-1]
        # Make room for the note on the last message: drop its last pieces, or cut one short.
        while last and (len(last) >= max_lines or _size(last) + _NOTE_ROOM > room):
            text, starts = last.pop()
            keep = room - _NOTE_ROOM - _size(last) - 1
            if len(last) + 2 <= max_lines and 0 < keep < len(text):
                last.append((text[:keep], starts))
                dropped.insert(0, (text[keep:], False))
                break
            dropped.insert(0, (text, starts))
        lost_lines = rest_lines + sum(1 for _, starts in dropped if starts)
        if dropped and not dropped[0][1]:
            lost_lines += 1  # the line cut short
        lost_chars = rest_chars + sum(len(p) for p, _ in dropped)
        more = f"{lost_lines} more lines, " if lost_lines > 1 else ""
        last.append((f"… (truncated, {more}{lost_chars} more characters)", True))
    texts = ["\n".join(p for p, _ in m) for m in messages] or [""]
    if len(texts) == 1:
        return texts
    return [f"[{i}/{len(texts)}] {text}" for i, text in enumerate(texts, 1)]


def _size(message: list[tuple[str, bool]]) -> int:
    return sum(len(text) + 1 for text, _ in message)
