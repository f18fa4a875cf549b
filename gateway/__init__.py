"""Meterlink: an edge gateway for electricity meter data."""

__version__ = "0.1.0"
