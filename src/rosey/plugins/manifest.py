"""Moved to ``rosey.protocol.manifest`` (issue 11: the manifest model is a contract, and the
config below ``rosey.plugins`` validates with it). This name stays importable for code that
still uses it; new code imports ``rosey.protocol.manifest``.
"""

from rosey.protocol.manifest import *  # noqa: F403
from rosey.protocol.manifest import __all__ as __all__
