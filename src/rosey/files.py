"""Files replaced whole: a crash never leaves half a file, and a private file is never readable
by others, not even for a moment. The one implementation; everything that writes a file which
someone reads back uses it (``runtime.json``, the desired-state file, the uid table, the
nats-server config, and plugins through ``rosey.sdk.files``).

``write_atomically`` writes a temporary file beside the target (same folder: same filesystem,
so the rename is atomic), syncs it, and renames it over the target: readers see the old content
or the new, never a mix. ``private=True`` creates the temporary file with mode 0600 (and
forces it, should a stale one with wider bits lie there), for files that hold credentials.

Standard library only, no Rosey imports: it sits at the bottom of the import picture, so the
plugin process's SDK and the core both import it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_atomically", "write_json_atomically"]


def write_atomically(path: Path, data: bytes, *, private: bool = False) -> None:
    """Replace ``path`` with ``data``, atomically; ``private``: readable by the owner only.

    Without ``private`` the file gets the usual mode (0666 less the umask), as ``open`` would.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            if private:
                os.fchmod(file.fileno(), 0o600)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomically(path: Path, data: Any, *, private: bool = False) -> None:
    """Replace ``path`` with ``data`` as JSON (UTF-8, one-space indent), atomically."""
    write_atomically(path, json.dumps(data, ensure_ascii=False, indent=1).encode(), private=private)
