"""Print the lifecycle state diagram: ``python -m rosey.lifecycle.diagram [--markdown]``.

The operator docs' diagram is this output, so it can never drift from the state table.
``--markdown`` wraps it in a fenced ``mermaid`` block ready to paste into a page.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rosey.lifecycle.states import render_mermaid


def main(argv: Sequence[str] | None = None) -> int:
    """Write the diagram to stdout; exit code 2 for an unknown argument."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["--markdown"]):
        print("usage: python -m rosey.lifecycle.diagram [--markdown]", file=sys.stderr)
        return 2
    text = render_mermaid()
    if args:
        text = f"```mermaid\n{text}```\n"
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
