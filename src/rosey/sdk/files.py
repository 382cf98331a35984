"""Files in a plugin's data folder, written so a crash never leaves half a file.

``write_atomically`` writes a temporary file in the same folder, syncs it, and renames it over
the target: readers (and the plugin after a restart) see the old content or the new, never a
mix. ``private=True`` makes the file readable by its owner only. Standard library only.

The implementation is ``rosey.files``, which the core uses for its own files too; plugins keep
importing it from here.
"""

from __future__ import annotations

from rosey.files import write_atomically, write_json_atomically

__all__ = ["write_atomically", "write_json_atomically"]
