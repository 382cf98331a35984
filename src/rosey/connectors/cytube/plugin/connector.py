"""The CyTube connector process: ``CytubeClient`` behind the ``ConnectorPlugin`` seam."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from rosey.connectors.cytube.client import CytubeClient
from rosey.connectors.cytube.settings import CytubeSettings
from rosey.sdk.connector import ConnectorClient, ConnectorPlugin


class _Client(CytubeClient):
    def status_words(self) -> dict[str, Any]:
        status = self.status()
        return {
            "state": status.state.value,
            "last_error": status.last_error,
            "queued": status.queued,
            "in_flight": status.in_flight,
            "counters": status.counters,
        }


class CytubeConnector(ConnectorPlugin):
    """One CyTube channel (settings: ``rosey.connectors.cytube.settings.CytubeSettings``)."""

    def make_client(self) -> ConnectorClient:
        known = {f.name for f in fields(CytubeSettings)}
        settings = CytubeSettings(**{k: v for k, v in self.config.items() if k in known})
        return _Client(settings, self)
