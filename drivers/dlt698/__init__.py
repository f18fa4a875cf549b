"""DL/T 698.45 (面向对象的用电信息数据交换协议) meters: the sans-io protocol pieces.

Modules: ``frame`` (link frames, HCS/FCS, segmentation), ``data`` (the Data
types, scaler-units, units), ``apdu`` (GET / SET / ACTION / SECURITY services,
DAR), ``oads`` (the default OAD table with OBIS codes and the DL/T 645-2007
data identifiers of the same quantities).  No I/O and no import of the gateway
engine: the driver and the CLI are built on top of these.
"""
