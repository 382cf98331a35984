"""``rosey completion bash|zsh``: a shell completion script, generated from the parser.

Load it with ``eval "$(rosey completion bash)"`` in ``~/.bashrc`` (or save it as
``~/.local/share/bash-completion/completions/rosey``); for zsh, ``eval "$(rosey completion
zsh)"`` in ``~/.zshrc`` (it uses zsh's ``bashcompinit``). Commands, actions and options come
from the parser, so they never drift; plugin names come from the running bot when one can be
reached (``rosey completion --names``, quick and silent, with the ``--state-dir`` or
``--nats-url`` typed on the line), else only ``all`` is offered.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rosey.cli.common import EXIT_OK
from rosey.cli.parser import ALL, takes_names

__all__ = ["completion", "script"]

#: How long ``--names`` waits for the bot: completion must feel instant.
NAMES_TIMEOUT = 1.5
#: Options whose value is a path (completed as files) or free text (nothing offered).
_PATH_OPTIONS = ("--config", "--plugins-dir", "--state-dir")


def completion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.names:
        for name in asyncio.run(_names(args.nats_url, args.state_dir)):
            print(name)
        return EXIT_OK
    print(script(parser, args.shell))
    return EXIT_OK


async def _names(nats_url: str | None, state_dir: Path | None) -> list[str]:
    """The running bot's plugin names, or none (never an error: this runs on every Tab)."""
    from rosey.api.client import ManagementClient, NoBot, locate
    from rosey.errors import RoseyError

    address = locate(nats_url, state_dir)
    if isinstance(address, NoBot):
        return []
    try:
        async with asyncio.timeout(NAMES_TIMEOUT), ManagementClient(address) as client:
            reply = await client.call("list", {}, timeout=NAMES_TIMEOUT)
    except (RoseyError, TimeoutError, OSError):
        return []
    if not reply.get("ok"):
        return []
    return [str(p["name"]) for p in reply["result"]["plugins"]]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """(every option string, those that take a value)."""
    every: list[str] = []
    valued: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        every += [o for o in action.option_strings if o.startswith("--") or len(o) == 2]
        if action.option_strings and action.nargs != 0:
            valued += list(action.option_strings)
    return every, valued


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (``bash`` or ``zsh``)."""
    commands = _subparsers(parser)
    top, _ = _options(parser)
    valued: set[str] = set()
    command_cases: list[str] = []
    for name, sub in commands.items():
        options, takes = _options(sub)
        valued.update(takes)
        if name == "plugin":
            continue
        extra = "$(_rosey_names) " if name == "logs" else ""
        extra += "bash zsh " if name == "completion" else ""
        command_cases.append(
            f'        {name}) COMPREPLY=($(compgen -W "{extra}{" ".join(options)}" -- "$cur"));;'
        )
    actions = _subparsers(commands["plugin"])
    action_cases: list[str] = []
    from rosey.api.actions import ACTIONS

    for name, sub in actions.items():
        options, takes = _options(sub)
        valued.update(takes)
        found = ACTIONS.get(name)
        if found is not None and takes_names(found):
            words = f"$(_rosey_names) {ALL}"
        elif name in ("logs", "reload", "rollback", "remove", "update"):
            words = "$(_rosey_names)"
        elif name == "help":
            words = " ".join(actions)
        else:
            words = ""
        files = " -o default" if name in ("validate", "install", "update") else ""
        action_cases.append(
            f'            {name}) words="{words}"; flags="{" ".join(options)}"; opts="{files}";;'
        )
    path_options = "|".join(o for o in sorted(valued) if o in _PATH_OPTIONS)
    other_options = "|".join(o for o in sorted(valued) if o not in _PATH_OPTIONS)
    body = f"""# rosey {shell} completion: eval "$(rosey completion {shell})"
_rosey_names() {{
    "$_rosey_cmd" completion --names ${{_rosey_state:+--state-dir "$_rosey_state"}} \\
        ${{_rosey_url:+--nats-url "$_rosey_url"}} 2>/dev/null
}}
_rosey() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local cmd="" action="" words="" flags="" opts="" i
    _rosey_cmd="${{COMP_WORDS[0]}}" _rosey_state="" _rosey_url=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            --state-dir) _rosey_state="${{COMP_WORDS[i+1]}}";;
            --nats-url) _rosey_url="${{COMP_WORDS[i+1]}}";;
            -*) ;;
            *)
                case "${{COMP_WORDS[i-1]}}" in {path_options}|{other_options}) continue;; esac
                if [[ -z $cmd ]]; then cmd="${{COMP_WORDS[i]}}"
                elif [[ $cmd == plugin && -z $action ]]; then action="${{COMP_WORDS[i]}}"; fi;;
        esac
    done
    COMPREPLY=()
    case "$prev" in
        {path_options}) COMPREPLY=($(compgen -f -- "$cur")); return;;
        {other_options}) return;;
    esac
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "{" ".join(commands)} {" ".join(top)}" -- "$cur"))
        return
    fi
    case "$cmd" in
{chr(10).join(command_cases)}
        plugin)
            if [[ -z $action ]]; then
                COMPREPLY=($(compgen -W "{" ".join(actions)} --help" -- "$cur"))
                return
            fi
            case "$action" in
{chr(10).join(action_cases)}
            esac
            # Options only once a '-' is typed: a bare Tab offers the names.
            if [[ $cur == -* ]]; then words="$flags"; fi
            COMPREPLY=($(compgen -W "$words" -- "$cur"))
            if [[ -n $opts && ${{#COMPREPLY[@]}} -eq 0 ]]; then
                COMPREPLY=($(compgen -f -- "$cur"))
            fi;;
    esac
}}
complete -F _rosey rosey
"""
    if shell == "zsh":
        return "#compdef rosey\nautoload -U +X bashcompinit && bashcompinit\n" + body
    return body
