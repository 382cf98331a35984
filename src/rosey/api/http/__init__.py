"""The HTTP face (DESIGN 2.11): the management API, live events, metrics and the dashboard.

```
api/http/
  app.py       the server: token check, routes over ``api/actions``, envelopes → HTTP statuses
  events.py    server-sent events: a bounded, numbered buffer of bus events; resume by id
  metrics.py   Prometheus text: plugin status at scrape time, command outcomes from the bus
  openapi.py   the OpenAPI description, built from the same action registry the routes use
  static/      the dashboard (one HTML page, its script and style; no build step)
```
Like chat and NATS, a thin adapter: every behaviour is an action's. None of it is on the
plugin process's import path (aiohttp and prometheus_client stay in the bot).
"""
