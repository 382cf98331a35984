"""What a plugin's code declares, read from its syntax tree: never imported, never run.

The bot and the CLI must not run plugin code outside the sandbox, yet they want to know which
``@command`` handlers the entrypoint class has (``rosey plugin validate`` compares them with the
manifest's ``commands``) and the help of each (``!help``, ``!help roll``, ``rosey plugin help``).
Both are read from the module's ``ast``: the handler's ``@command("roll", help=..., usage=...)``
keywords when they are string literals, else its docstring (first line: the help; a line
starting with ``usage:``: the usage). Base classes defined in the same module are followed; a
base imported from elsewhere (other than ``Plugin``) makes the picture incomplete, and then
no "missing handler" is claimed.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CommandDoc",
    "SourceCommands",
    "command_docs",
    "docstring_help",
    "module_file",
    "name_of",
    "read_commands",
]

#: Base classes that add no handlers (the SDK's).
_SDK_BASES = frozenset({"Plugin", "Connector", "object"})


@dataclass(frozen=True)
class CommandDoc:
    """One ``@command`` handler: its method, one line of help, and its usage."""

    command: str
    method: str
    help: str = ""
    usage: str = ""

    @property
    def usage_line(self) -> str:
        """``!roll NdM``: the usage given, or just the command word."""
        return self.usage or f"!{self.command}"


@dataclass(frozen=True)
class SourceCommands:
    """The handlers of a class, and whether every base class could be read too."""

    handlers: dict[str, CommandDoc] = field(default_factory=dict)
    complete: bool = True
    #: The class was found (else nothing here means anything).
    found: bool = True


def module_file(module: str, folder: Path) -> Path | None:
    """The file of ``module`` inside the plugin folder (``a.b`` → ``a/b.py`` or
    ``a/b/__init__.py``), or None."""
    relative = Path(*module.split("."))
    for candidate in (folder / relative.with_suffix(".py"), folder / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def read_commands(tree: ast.Module, class_name: str) -> SourceCommands:
    """The ``@command`` handlers of ``class_name`` (and its bases in the same module)."""
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    if class_name not in classes:
        return SourceCommands(found=False, complete=False)
    handlers: dict[str, CommandDoc] = {}
    complete = True
    # Bases first, so that a subclass's handler wins; each class once (no cycles).
    order: list[ast.ClassDef] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        nonlocal complete
        if name in seen:
            return
        seen.add(name)
        node = classes[name]
        for base in node.bases:
            base_name = name_of(base)
            if base_name in classes:
                visit(base_name)
            elif base_name not in _SDK_BASES:
                complete = False
        order.append(node)

    visit(class_name)
    for node in order:
        for item in node.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                for doc in _command_docs(item):
                    handlers[doc.command] = doc
    return SourceCommands(handlers, complete)


def name_of(node: ast.expr) -> str:
    """The name an expression like ``Plugin`` or ``sdk.Plugin`` ends in ("" for any other)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _command_docs(func: ast.FunctionDef | ast.AsyncFunctionDef) -> list[CommandDoc]:
    found: list[CommandDoc] = []
    for decorator in func.decorator_list:
        if not (isinstance(decorator, ast.Call) and name_of(decorator.func) == "command"):
            continue
        word = _text(decorator.args[0]) if decorator.args else None
        if word is None:
            continue
        keywords = {k.arg: _text(k.value) for k in decorator.keywords if k.arg}
        doc_help, doc_usage = docstring_help(ast.get_docstring(func) or "")
        found.append(
            CommandDoc(
                command=word,
                method=func.name,
                help=keywords.get("help") or doc_help,
                usage=keywords.get("usage") or doc_usage,
            )
        )
    return found


def _text(node: ast.expr) -> str | None:
    """The string a literal holds, else None (a name or an expression: not read)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def docstring_help(doc: str) -> tuple[str, str]:
    """(the first line, the text after ``usage:`` on a line that starts with it)."""
    lines = [line.strip() for line in doc.splitlines()]
    first = lines[0] if lines else ""
    usage = next(
        (line[len("usage:") :].strip() for line in lines if line.lower().startswith("usage:")),
        "",
    )
    if first.lower().startswith("usage:"):
        first = ""
    return first, usage


@functools.lru_cache(maxsize=256)
def _cached(path: Path, mtime_ns: int, size: int, class_name: str) -> SourceCommands:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return SourceCommands(found=False, complete=False)
    return read_commands(tree, class_name)


def command_docs(entrypoint: str, folder: Path) -> SourceCommands:
    """The handlers of a plugin's entrypoint class (``module:Class``), read from its source.

    Cached by the file's modification time and size: ``!help`` asks often, edits are rare.
    """
    module, _, class_name = entrypoint.partition(":")
    path = module_file(module, folder)
    if path is None:
        return SourceCommands(found=False, complete=False)
    try:
        info = path.stat()
    except OSError:
        return SourceCommands(found=False, complete=False)
    return _cached(path, info.st_mtime_ns, info.st_size, class_name)
