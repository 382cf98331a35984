"""The manifest a plugin runs with: its ``plugin.yaml`` under the bot config, within bounds.

Manifest < config: the ``plugins.<name>`` entry, and ``health_check_interval`` for manifests
that set no ``health.interval_s`` (when the config file sets it); then the operator's bounds
(``critical``, ``limits_max``: ``rosey.plugins.bounds``). Pure: the manager logs the notes and
keeps them for status.
"""

from __future__ import annotations

from rosey.config import BotConfig
from rosey.plugins.bounds import Bounded, bound
from rosey.plugins.discovery import DiscoveredPlugin

__all__ = ["effective_manifest"]


def effective_manifest(config: BotConfig, found: DiscoveredPlugin) -> Bounded:
    """The manifest ``found`` runs with under ``config``, and one note per bound applied."""
    bounded = bound(
        config.apply(found.manifest),
        config.limits_max.model_dump(),
        operator_critical=config.override_for(found.name).critical,
    )
    manifest = bounded.manifest
    if (
        "health_check_interval" in config.model_fields_set
        and "interval_s" not in found.manifest.health.model_fields_set
        and config.override_for(found.name).health.interval_s is None
    ):
        health = manifest.health.model_copy(update={"interval_s": config.health_check_interval})
        manifest = manifest.model_copy(update={"health": health})
    return Bounded(manifest, bounded.notes)
