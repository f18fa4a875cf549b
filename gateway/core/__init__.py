"""The ground floor: reading model, errors, configuration schema, driver interface, plug-in registry.

Imports nothing else of Meterlink's, and names no protocol."""
