"""A JetStream key-value bucket behind a small seam that speaks ``rosey.errors``.

Only ``get``, ``put`` and ``delete`` of whole values: the manager keeps one small document per
key, so it never needs watchers or key listings (which would need push consumers). Every
operation is bounded by ``timeout``; nats-py's errors become ``BusError`` subclasses here, and a
server without JetStream answers ``open`` with ``NoResponders``, which callers take as "use
something else".
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import nats.js.errors

from rosey.bus.client import EventBus
from rosey.errors import BusError, NoResponders, RequestTimeout

__all__ = ["KeyValue", "delete_bucket"]

_NATS_ERRORS = (TimeoutError, nats.errors.Error)


class KeyValue:
    """One bucket on the bus's connection; create it with :meth:`open`."""

    def __init__(self, bucket: str, kv: Any, timeout: float) -> None:
        self.bucket = bucket
        self._kv = kv
        self._timeout = timeout

    @classmethod
    async def open(
        cls,
        bus: EventBus,
        bucket: str,
        *,
        timeout: float = 2.0,
        description: str = "",
        max_bytes: int | None = None,
    ) -> KeyValue:
        """Bind to ``bucket``, creating it (history 1, file storage) if it does not exist.

        ``max_bytes`` caps what the bucket may hold when it is created here: a put beyond it is
        refused (``BusError``) and nothing else's storage is touched.

        ``NoResponders`` when the server has no JetStream; ``RequestTimeout`` when it does not
        answer within ``timeout``; ``BusError`` for any other refusal.
        """
        js = bus.jetstream()
        subject = f"$JS.API (bucket {bucket})"
        try:
            async with asyncio.timeout(timeout):
                await js.account_info()
                try:
                    kv = await js.key_value(bucket)
                except nats.js.errors.BucketNotFoundError:
                    kv = await js.create_key_value(
                        bucket=bucket,
                        history=1,
                        description=description or None,
                        max_bytes=max_bytes,
                    )
        except (nats.errors.NoRespondersError, nats.js.errors.ServiceUnavailableError):
            raise NoResponders(subject) from None
        except (TimeoutError, nats.errors.TimeoutError):
            raise RequestTimeout(subject, timeout) from None
        except nats.errors.Error as exc:
            raise BusError(f"key-value bucket {bucket}: {exc}") from exc
        return cls(bucket, kv, timeout)

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None if it has none (never set, or deleted)."""
        try:
            async with asyncio.timeout(self._timeout):
                entry = await self._kv.get(key)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        except _NATS_ERRORS as exc:
            raise self._translate("get", key, exc) from None
        value = entry.value
        return bytes(value) if value is not None else None

    async def put(self, key: str, value: bytes) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._kv.put(key, value)
        except _NATS_ERRORS as exc:
            raise self._translate("put", key, exc) from None

    async def delete(self, key: str) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._kv.delete(key)
        except _NATS_ERRORS as exc:
            raise self._translate("delete", key, exc) from None

    def _translate(self, operation: str, key: str, exc: BaseException) -> BusError:
        where = f"$KV.{self.bucket}.{key}"
        if isinstance(exc, TimeoutError | nats.errors.TimeoutError):
            return RequestTimeout(where, self._timeout)
        if isinstance(exc, nats.errors.NoRespondersError | nats.js.errors.ServiceUnavailableError):
            return NoResponders(where)
        return BusError(f"key-value {operation} {where} failed: {exc}")


async def delete_bucket(bus: EventBus, bucket: str, *, timeout: float = 2.0) -> bool:
    """Delete ``bucket`` and everything in it; whether there was one to delete.

    An account without JetStream has no bucket: False, as for a bucket that is not there.
    """
    where = f"$JS.API (bucket {bucket})"
    try:
        async with asyncio.timeout(timeout):
            return bool(await bus.jetstream().delete_key_value(bucket))
    except (
        nats.js.errors.NotFoundError,
        nats.errors.NoRespondersError,
        nats.js.errors.ServiceUnavailableError,
    ):
        return False
    except (TimeoutError, nats.errors.TimeoutError):
        raise RequestTimeout(where, timeout) from None
    except nats.errors.Error as exc:
        raise BusError(f"key-value bucket {bucket}: cannot delete it: {exc}") from exc
