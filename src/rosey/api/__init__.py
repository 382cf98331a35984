"""Runtime control of plugins: each management action once, and thin faces over them.

```
api/
  action.py        what an action is: request model, permission, behaviour, help text
  actions/         one module per action (list, status, start, ...); the registry finds them
  results.py       the result shapes (STATUS of DESIGN 2.6) and how they are gathered
  logfile.py       reading a plugin's log: the last lines, or what came after a cursor
  render.py        words for people: status blocks, list lines, tables, errors (pure)
  chat.py          face: ``!plugin ACTION ...`` from any connector (admin check, chunking)
  nats_face.py     face: ``rosey.manager.<action>`` request/reply envelopes
  http/            face: the HTTP API, live events, /metrics and the dashboard (DESIGN 2.11)
```
The CLI face is ``rosey.cli``. Adding an action means adding one module to ``actions/``.
"""
