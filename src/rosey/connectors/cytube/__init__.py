"""The CyTube connector: one CyTube channel joined to the bus (DESIGN 2.9, ../shared/cytube.md).

Pure modules decide, ``client`` does the socket.io I/O:

- ``pacer``    sends no faster than the server's flood limiter accepts (defaults, or the
               channel's ``chat_antiflood_params`` for the bot's rank);
- ``text``     outgoing lines split at the server's length in UTF-16 code units and kept from
               reading as ``/commands``; incoming HTML turned into command text;
- ``state``    who is in the channel with which rank, and which lines are history replayed on join;
- ``policy``   reconnect backoff within the connection throttle, and refusals put into words;
- ``outbox``   outgoing lines: a bounded queue, each line in flight until the server echoes it,
               resent after ``cooldown``/``noflood`` or a lost connection, every loss counted;
- ``settings`` the connector's settings, and secrets as ``env:VAR``/``file:PATH``;
- ``client``   python-socketio ``AsyncClient``: discovery, join, login, events → an
               ``EventSink``, the outbox drained through the pacer, reconnects.

Only ``client`` imports python-socketio/aiohttp, and nothing on the plugin process's import path
imports this package: it runs in the connector's own process.
"""

PLATFORM = "cytube"
