"""Files in a plugin's data folder, written so a crash never leaves half a file.

``write_atomically`` writes a temporary file in the same folder, syncs it, and renames it over
the target: readers (and the plugin after a restart) see the old content or the new, never a
mix. Standard library only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_atomically", "write_json_atomically"]


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomically(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON (UTF-8, one-space indent), atomically."""
    write_atomically(path, json.dumps(data, ensure_ascii=False, indent=1).encode())
