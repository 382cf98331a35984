"""``install SOURCE``: install a plugin from a folder, ``.tar.gz`` or ``.zip`` on the bot's host."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rosey.api.action import NAME_MAX, Request, action, field
from rosey.manager.change_result import ChangeResult

if TYPE_CHECKING:
    from rosey.manager.manager import PluginManager

#: The longest source path (at least 1 character): a path on the bot's host (absolute: the
#: bot's working folder is not the caller's).
SOURCE_MAX = 4096
YES = "accept the grants it asks for (else they are shown, and asked about at a terminal)"


class InstallRequest(Request):
    """``{"source": PATH, "yes": false, "plugin": NAME}``; ``plugin`` optional."""

    source: str = field(min_length=1, max_length=SOURCE_MAX)
    yes: bool = field(default=False, description=YES)
    plugin: str | None = field(
        default=None,
        min_length=1,
        max_length=NAME_MAX,
        description="refuse unless the source holds this plugin",
    )


async def run(manager: PluginManager, request: InstallRequest) -> ChangeResult:
    """Install a plugin from a folder, .tar.gz or .zip (an absolute path on the bot's host).

    Checked first, nothing changes when refused: its manifest and entrypoint, a free name,
    commands no other plugin claims, dependencies installed and without a cycle,
    requires_rosey, its requirements' environment built. Without "yes" the reply is the
    error confirmation_needed, whose message lists the grants it asks for in words; send it
    again with "yes": true to accept them. It goes into the first plugins folder of the
    config and starts (a plugin that does not start is removed again).
    Result: {"plugin", "action", "version", "previous", "report": [lines], "status": STATUS}.
    """
    from rosey.manager.installer import Installer  # only when used: not in an idle bot

    return await Installer(manager).install(
        request.source, yes=request.yes, expected=request.plugin
    )


ACTION = action(
    name="install",
    request=InstallRequest,
    run=run,
    result=ChangeResult,
    mutating=True,
    positional=("source",),
    metavars={"source": "SOURCE"},
    order=110,
)
