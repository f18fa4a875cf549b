"""Protocol drivers: one package per protocol (a sans-io codec, its driver, its configuration schema).

Each package exports one ``PROTOCOL`` description, registered as a
``meterlink.protocols`` entry point; the engine finds drivers only through
:mod:`meterlink.core.registry`.  Shared by all: ``transport`` (the one byte
transport), ``serial_errors`` (OS errors in plain words), ``bus`` (several
protocols or line settings on one adapter).
"""
