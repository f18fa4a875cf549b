"""DL/T 645-2007 and DL/T 645-1997 meters (the Chinese State Grid's multi-function meter protocol).

Modules: ``codec`` and ``codec1997`` (frames and values, sans-io), ``dis`` and
``dis1997`` (the data identifier tables with OBIS codes), ``driver`` (reading
on the one transport), ``scan``, ``checks`` and ``schema`` (the configuration).
"""
