"""Storage buckets: created by the core, in each plugin's own broker account.

A plugin with the ``storage`` grant may use its bucket but not create streams (the JetStream API
takes republish targets from the request body, which no subject permission checks), so the core
creates the bucket for it, connecting as that account's keeper user, sized to the plugin's
storage quota. The bot (``rosey.bot``) and the test harness (``rosey.sdk.testing``) both use it.
"""

from __future__ import annotations

from rosey.bus.client import EventBus
from rosey.bus.kv import KeyValue
from rosey.security.identities import IdentityBook


async def create_bucket(book: IdentityBook, plugin: str, url: str) -> bool:
    """Create ``plugin``'s bucket if it has the ``storage`` grant; whether it has one.

    Raises ``RoseyError`` (from ``rosey.bus``) when the broker refuses.
    """
    bucket = book.permissions(plugin).kv_bucket
    if bucket is None:
        return False
    keeper = book.keeper(plugin)
    async with EventBus(
        url, name=f"rosey-keeper-{plugin}", user=keeper.user, password=keeper.password
    ) as bus:
        await KeyValue.open(
            bus,
            bucket,
            description=f"storage of plugin {plugin}",
            max_bytes=book.quotas.storage_bytes,
        )
    return True
