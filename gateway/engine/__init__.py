"""The engine: scheduler, journal, sinks, commands, time sync, metrics.

Finds drivers only through the plug-in registry."""
