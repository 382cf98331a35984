"""Each plugin with ``requirements`` runs in a Python environment of its own (DESIGN 2.10).

An environment holds the plugin's requirements, the SDK's one outside need (``nats-py``, pinned
to the bot's version), and the ``rosey`` package through a ``.pth`` file that points at a folder
holding only a symlink to it: the plugin sees the SDK, never the rest of the bot's virtualenv
(no ``--system-site-packages``). The plugin runs ``<env>/bin/python -I -m rosey.sdk.runner``
(``-I`` ignores ``PYTHONPATH`` and the user site; the env's own ``.pth`` files still count).

Layout: ``<state_dir>/envs/<key>/``, where the key hashes the normalized set of requirements
and the runtime (``rosey.plugins.requirements``): equal sets share one environment, a change of
interpreter, of the SDK's pins or of where the rosey package lives makes a new one. Built with
``uv`` (``uv.find_uv_bin()``; ``pip`` when uv is missing) into ``envs/.build-<key>-<random>``,
checked (the runner's imports must load, and ``rosey`` must be the bot's), then renamed into
place: a folder named by its key is complete, and a failed build leaves nothing behind. A failed
build is an ``EnvironmentBuildFailed`` naming the requirement the resolver blamed and why.

Built by ``rosey plugin validate`` and install, never at start: ``python_for`` only looks.

When the bot is root and plugins have uids of their own, ``share_with_group`` makes an
environment ``0750`` with a group of its own that only the plugins using it get as a
supplementary group: other plugins' uids cannot enter it (Landlock refuses them anyway).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from rosey.errors import EnvironmentBuildFailed
from rosey.plugins.requirements import blame, environment_key, normal_set

__all__ = [
    "MARKER",
    "EnvironmentStore",
    "find_uv",
    "runtime_fingerprint",
    "sdk_requirements",
    "share_with_group",
]

#: Written last into a complete environment: what it was built for.
MARKER = "rosey-env.json"
#: The folder holding only the ``rosey`` symlink, named by the ``.pth`` file.
SDK_FOLDER = "rosey-sdk"
_PTH = "_rosey_sdk.pth"
_BUILDING = ".build-"

# Run by the new environment's interpreter: the runner's imports load, and ``rosey`` is the
# bot's package (a requirement shipping a module of that name would hide the SDK).
_CHECK = (
    "import os, sys\n"
    "import rosey, rosey.sdk.runner\n"
    "where = os.path.dirname(os.path.realpath(rosey.__file__))\n"
    "if where != os.path.realpath(sys.argv[1]):\n"
    "    sys.exit(f'the rosey package comes from {where}, not from the bot ({sys.argv[1]}): '\n"
    "             'a requirement installs a module named rosey')\n"
)


def rosey_folder() -> Path:
    """The folder of the bot's ``rosey`` package (what the environments link to)."""
    import rosey

    return Path(rosey.__file__ or "").resolve().parent


def sdk_requirements() -> list[str]:
    """What the plugin runtime needs besides the standard library, pinned to the bot's."""
    return [_nats_pin()]


@functools.cache
def _nats_pin() -> str:
    return f"nats-py=={importlib.metadata.version('nats-py')}"


@functools.cache
def runtime_fingerprint(python: str) -> str:
    """What an environment is built for besides its requirements (part of its key)."""
    return "; ".join(
        (
            f"python {os.path.realpath(python)} {sys.implementation.name} "
            f"{'.'.join(map(str, sys.version_info[:3]))}",
            *sdk_requirements(),
            f"rosey at {rosey_folder()}",
        )
    )


def find_uv() -> str | None:
    """The ``uv`` binary the uv package installed, or None (then pip builds)."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    try:
        return str(find_uv_bin())
    except FileNotFoundError:
        return None


def share_with_group(env: Path, gid: int) -> None:
    """Let only members of ``gid`` (the plugins using ``env``) enter it: mode 0750.

    Its parent (``<state_dir>/envs``) becomes 0711: a plugin reaches its own environment by
    name but cannot list the others.
    """
    parent = env.parent
    if parent.stat().st_mode & 0o777 != 0o711:
        os.chmod(parent, 0o711)
    info = env.stat()
    if info.st_gid != gid:
        os.chown(env, -1, gid)
    if info.st_mode & 0o777 != 0o750:
        os.chmod(env, 0o750)


class EnvironmentStore:
    """The environments under ``root`` (``<state_dir>/envs``), one per requirement set."""

    def __init__(
        self,
        root: Path,
        *,
        python: str = sys.executable,
        tool: str | None = None,
        timeout: float = 600.0,
    ) -> None:
        """``tool``: ``"uv"`` or ``"pip"``; None picks uv when it is installed, else pip."""
        self.root = root
        self.python = python
        self._tool = tool
        self.timeout = timeout
        self._runtime = runtime_fingerprint(python)

    @property
    def tool(self) -> str:
        """What builds: ``"uv"``, or ``"pip"`` when uv is not installed (looked up once)."""
        if self._tool is None:
            self._tool = "uv" if find_uv() else "pip"
        return self._tool

    def key(self, requirements: Iterable[str]) -> str:
        return environment_key(requirements, self._runtime)

    def path_for(self, requirements: Iterable[str]) -> Path:
        """Where the environment of this requirement set is (or would be)."""
        return self.root / self.key(requirements)

    def python_for(self, requirements: Iterable[str]) -> Path | None:
        """The interpreter of the built environment for this set, None when it is not built."""
        env = self.path_for(requirements)
        python = env / "bin" / "python"
        return python if (env / MARKER).is_file() and python.exists() else None

    async def ensure(self, requirements: Sequence[str]) -> Path:
        """The interpreter of this set's environment, built first when missing (in a thread)."""
        found = self.python_for(requirements)
        if found is not None:
            return found
        return await asyncio.to_thread(self.build, requirements)

    def built(self) -> list[Path]:
        """Every complete environment in the store."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if (p / MARKER).is_file())

    def prune(self, keep: Iterable[Sequence[str]]) -> list[Path]:
        """Delete every complete environment but those of the requirement sets in ``keep``
        (the plugins installed); the folders deleted. Call it only while no plugin using one
        of them runs. Folders of builds under way (``.build-*``) are left alone."""
        wanted = {self.key(requirements) for requirements in keep}
        removed = [env for env in self.built() if env.name not in wanted]
        for env in removed:
            shutil.rmtree(env)
        return removed

    def build(self, requirements: Sequence[str]) -> Path:
        """Build this set's environment unless it is there; its interpreter. Blocking.

        ``EnvironmentBuildFailed`` when the installer refuses; nothing is left behind then.
        """
        found = self.python_for(requirements)
        if found is not None:
            return found
        wanted = list(requirements)
        final = self.path_for(wanted)
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f"{_BUILDING}{final.name}-{secrets.token_hex(4)}"
        started = time.monotonic()
        try:
            self._create(temp, wanted)
            self._install(temp, wanted)
            self._link_sdk(temp)
            self._check(temp, wanted)
            record = {
                "requirements": list(normal_set(wanted)),
                "sdk": sdk_requirements(),
                "runtime": self._runtime,
                "tool": self.tool,
                "built_s": round(time.monotonic() - started, 3),
            }
            (temp / MARKER).write_text(json.dumps(record, indent=1) + "\n")
            try:
                os.rename(temp, final)
            except OSError:
                if self.python_for(wanted) is None:  # not another build of the same set
                    raise
                shutil.rmtree(temp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return final / "bin" / "python"

    # -- the steps ------------------------------------------------------------------------------

    def _run(self, argv: Sequence[str], wanted: Sequence[str]) -> str:
        """Run one step; its output. ``EnvironmentBuildFailed`` (blaming what it names) if it
        fails, does not end in time or cannot be started."""
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
        env.update(UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1", PIP_NO_INPUT="1")
        env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        asked = [*wanted, *sdk_requirements()]
        try:
            done = subprocess.run(
                list(argv),
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EnvironmentBuildFailed(
                wanted, (), f"no result within {self.timeout:g} s", self.tool
            ) from None
        except OSError as exc:
            raise EnvironmentBuildFailed(
                wanted, (), f"cannot run {argv[0]}: {exc.strerror}", self.tool
            ) from None
        output = (done.stdout or "") + (done.stderr or "")
        if done.returncode != 0:
            found = blame(output, asked)
            raise EnvironmentBuildFailed(wanted, found.requirements, found.reason, self.tool)
        return output

    def _create(self, temp: Path, wanted: Sequence[str]) -> None:
        if self.tool == "uv":
            uv = find_uv() or "uv"
            argv = [uv, "venv", "--quiet", "--no-project", "--relocatable"]
            self._run([*argv, "--python", self.python, str(temp)], wanted)
        else:
            self._run([self.python, "-m", "venv", "--without-pip", str(temp)], wanted)

    def _install(self, temp: Path, wanted: Sequence[str]) -> None:
        python = str(temp / "bin" / "python")
        asked = [*wanted, *sdk_requirements()]
        if self.tool == "uv":
            uv = find_uv() or "uv"
            self._run(
                [uv, "pip", "install", "--compile-bytecode", "--python", python, *asked], wanted
            )
        else:
            argv = [self.python, "-m", "pip", "--python", python, "install", "--no-input"]
            self._run([*argv, *asked], wanted)

    def _link_sdk(self, temp: Path) -> None:
        """``rosey`` importable through a .pth naming a folder that holds only its symlink."""
        holder = temp / SDK_FOLDER
        holder.mkdir()
        (holder / "rosey").symlink_to(rosey_folder(), target_is_directory=True)
        (site,) = (temp / "lib").glob("python*/site-packages")
        # Relative to site-packages (site.py joins it): the rename into place keeps it right.
        (site / _PTH).write_text(os.path.relpath(holder, site) + "\n")

    def _check(self, temp: Path, wanted: Sequence[str]) -> None:
        python = str(temp / "bin" / "python")
        self._run([python, "-I", "-c", _CHECK, str(rosey_folder())], wanted)
