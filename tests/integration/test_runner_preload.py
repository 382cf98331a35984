"""What the fork server readies once for every forked plugin (``rosey.sdk.runner.preload``):
the compiled seccomp filters, and the C library the confinement steps call, already loaded
(a forked plugin then neither compiles nor loads them before its plugin code runs)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
from rosey.sandbox import landlock, seccomp
assert not landlock._LIBC and not seccomp._LIBC and not seccomp._compiled
from rosey.sdk import runner
runner.preload()
libc = landlock._LIBC[0]
assert landlock._libc() is libc and seccomp._libc() is seccomp._LIBC[0]
print(sorted(seccomp._compiled) if seccomp.current_arch() else "no-arch")
"""


def test_preload_loads_the_c_library_and_compiles_the_filters_once() -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-c", PROBE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("[False, True]", "no-arch")
