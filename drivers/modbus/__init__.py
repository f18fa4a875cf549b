"""Modbus RTU (serial, or through a serial device server) and Modbus TCP meters.

Modules: ``protocol`` (the plug-in description), ``codec`` (frames and register values, sans-io), ``plan`` (the block
reads of a poll), ``driver`` (RTU on the one transport, TCP through pymodbus),
``scan`` (which unit ids answer), ``schema`` (the configuration's keys).
"""
