"""Moved to ``rosey.protocol.admins`` (issue 11: the ``admins`` entries are a contract of the
config, which sits below ``rosey.security``). This name stays importable for code that still
uses it; new code imports ``rosey.protocol.admins``.
"""

from rosey.protocol.admins import *  # noqa: F403
from rosey.protocol.admins import __all__ as __all__
