"""The systemd notify protocol, for ``Type=notify`` units: ``READY=1``, ``STOPPING=1``, ``STATUS=``.

The whole protocol is one datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace), so it is written here
rather than taken from a dependency (sd_notify(3)). Without the variable every call does nothing:
the bot run from a terminal or a container behaves as before.

The variable is removed from the environment on the first call (as ``sd_notify``'s
``unset_environment`` does) so that no child of the bot can claim to be the service; plugins
get a scrubbed environment anyway.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("rosey")

ENV = "NOTIFY_SOCKET"

_address: str | None = None
_read = False


def _socket_address() -> str | None:
    global _address, _read
    if not _read:
        _read = True
        value = os.environ.pop(ENV, "") or None
        if value is not None and value[0] not in "/@":
            log.warning("ignoring %s=%r: not a socket path or an @abstract name", ENV, value)
            value = None
        _address = value
    return _address


def notify(**fields: str) -> bool:
    """Send ``KEY=VALUE`` fields (``notify(READY="1", STATUS="up")``); whether it was sent.

    Never raises: a service manager that went away must not stop the bot.
    """
    address = _socket_address()
    if address is None:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, target)
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", address, exc)
        return False
    return True
