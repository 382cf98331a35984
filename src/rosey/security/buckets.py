"""Storage buckets: created by the core, in each plugin's own broker account.

A plugin with the ``storage`` grant may use its bucket but not create streams (the JetStream API
takes republish targets from the request body, which no subject permission checks), so the core
creates the bucket for it, connecting as that account's keeper user, sized to the plugin's
storage quota, and deletes it when an operator removes the plugin with ``--purge``. The bot
(``rosey.bot``) and the test harness (``rosey.sdk.testing``) both use it.
"""

from __future__ import annotations

from rosey.bus.client import EventBus
from rosey.bus.kv import KeyValue
from rosey.bus.kv import delete_bucket as _delete
from rosey.security.identities import IdentityBook


def _keeper_bus(book: IdentityBook, plugin: str, url: str) -> EventBus:
    """A connection as ``plugin``'s keeper: the only user of its account that may manage
    streams (the plugin itself may not)."""
    keeper = book.keeper(plugin)
    return EventBus(url, name=f"rosey-keeper-{plugin}", user=keeper.user, password=keeper.password)


async def create_bucket(book: IdentityBook, plugin: str, url: str) -> bool:
    """Create ``plugin``'s bucket if it has the ``storage`` grant; whether it has one.

    Raises ``RoseyError`` (from ``rosey.bus``) when the broker refuses.
    """
    bucket = book.permissions(plugin).kv_bucket
    if bucket is None:
        return False
    async with _keeper_bus(book, plugin, url) as bus:
        await KeyValue.open(
            bus,
            bucket,
            description=f"storage of plugin {plugin}",
            max_bytes=book.quotas.storage_bytes,
        )
    return True


async def delete_bucket(book: IdentityBook, plugin: str, url: str) -> bool:
    """Delete ``plugin``'s bucket and what it holds (``remove --purge``); whether it had one.

    Raises ``RoseyError`` (from ``rosey.bus``) when the broker refuses.
    """
    bucket = book.permissions(plugin).kv_bucket if plugin in book.plugins() else None
    if bucket is None:
        return False
    async with _keeper_bus(book, plugin, url) as bus:
        return await _delete(bus, bucket)
