"""Orchestration: one supervisor task per plugin, health, desired state, the PluginManager."""

from rosey.manager.manager import PluginManager

__all__ = ["PluginManager"]
