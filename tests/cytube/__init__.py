"""A CyTube double and a "human" client for the tests (../shared/cytube.md has the facts).

``double.CytubeDouble`` is a python-socketio server that behaves like CyTube where a bot depends
on it; ``human.Human`` is a person in its channel; ``rules`` holds the server's rules (flood
limiter, message processing, connection throttle) written from the facts, independently of the
connector's own modules, so that the tests of the double keep both honest.
"""
