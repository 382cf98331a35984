"""The only package that imports ``nats``: the EventBus client and the embedded server.

``rosey.bus.server`` (the embedded nats-server) is not imported here, so plugin processes,
which import ``rosey.bus.client`` through the SDK, do not pay for it.
"""

from rosey.bus.client import BusStats, EventBus, Message, Subscription

__all__ = ["BusStats", "EventBus", "Message", "Subscription"]
