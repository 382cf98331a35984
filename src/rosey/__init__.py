"""Rosey: a chat bot whose plugins run as isolated processes on a NATS bus.

Kept empty on purpose: plugin processes import ``rosey.sdk``, and every import here would be
paid by every plugin's start.
"""

__version__ = "0.1.0"
