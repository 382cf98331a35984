"""The HTTP face (DESIGN 2.11): the management API, live events, metrics and the dashboard.

```
api/http/
  app.py       the face: token check, routes over ``api/actions``, envelopes → HTTP statuses
  replies.py   envelopes and their statuses, common headers, the page and its CSP, POST bodies
  server.py    HTTP/1.1 on asyncio streams and h11, with the limits a hostile client meets
  messages.py  what server and face exchange: limits, request, response (and pure helpers)
  routing.py   request targets and routes (pure)
  events.py    server-sent events: a bounded, numbered buffer of bus events; resume by id
  metrics.py   Prometheus text: plugin status at scrape time, command outcomes from the bus
  openapi.py   the OpenAPI description, built from the same action registry the routes use
  static/      the dashboard (one HTML page, its script and style; no build step)
```
Like chat and NATS, a thin adapter: every behaviour is an action's. None of it is on the
plugin process's import path (h11 and prometheus_client stay in the bot), and the bot does
not load aiohttp for it (only the CyTube connector, in its own process, uses aiohttp).
"""
