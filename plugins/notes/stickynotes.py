"""Channel notes in the plugin's own key-value bucket: the example of ``Plugin.storage()``.

``!note set NAME TEXT`` keeps a note, ``!note NAME`` shows it, ``!note del NAME`` forgets it.
The notes live in the bucket the bot creates for a plugin with the ``storage`` grant, not in
the data folder: they survive restarts of the plugin and of the bot, and the bucket's size is
capped by the operator (``security.broker.plugin_storage_mb``, 64 MiB by default).
"""

from __future__ import annotations

import re

from rosey.errors import BusError
from rosey.sdk import CommandContext, Plugin, UsageError, command

#: Note names: what a bucket key may hold, lower-cased (keys are case-sensitive).
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
USAGE = "usage: !note NAME | !note set NAME TEXT | !note del NAME"


def note_name(text: str) -> str:
    """The bucket key for a note name; ``UsageError`` naming what is allowed."""
    name = text.lower()
    if not NAME.fullmatch(name):
        raise UsageError(
            f"a note name is 1 to 32 letters, digits, '-' or '_' (not {text!r}); {USAGE}"
        )
    return name


class NotesPlugin(Plugin):
    async def on_start(self) -> None:
        self.max_text = int(self.config.get("max_text", 400))

    @command("note")
    async def note(self, ctx: CommandContext) -> str:
        """Read, set or delete a sticky note.

        usage: !note NAME | !note set NAME TEXT | !note del NAME
        """
        if not ctx.args:
            raise UsageError(USAGE)
        action = ctx.args[0].lower()
        if action == "set":
            if len(ctx.args) < 3:
                raise UsageError(USAGE)
            return await self._set(note_name(ctx.args[1]), " ".join(ctx.args[2:]))
        if action == "del":
            if len(ctx.args) != 2:
                raise UsageError(USAGE)
            return await self._delete(note_name(ctx.args[1]))
        if len(ctx.args) != 1:
            raise UsageError(USAGE)
        name = note_name(action)
        value = await (await self.storage()).get(name)
        return f"{name}: {value.decode()}" if value is not None else f"no note called {name}"

    async def _set(self, name: str, text: str) -> str:
        if len(text) > self.max_text:
            raise UsageError(f"a note holds at most {self.max_text} characters")
        bucket = await self.storage()
        try:
            await bucket.put(name, text.encode())
        except BusError as exc:
            # The bucket's quota is full (or the bus is down): say so, keep running.
            self.log.warning("cannot store note %s: %s", name, exc)
            return f"could not keep the note {name}: storage refused it ({exc})"
        return f"noted: {name}"

    async def _delete(self, name: str) -> str:
        bucket = await self.storage()
        if await bucket.get(name) is None:
            return f"no note called {name}"
        await bucket.delete(name)
        return f"forgot {name}"
