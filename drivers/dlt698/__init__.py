"""DL/T 698.45 (面向对象的用电信息数据交换协议) meters, the protocol of State Grid meters since 2020.

The sans-io protocol pieces: ``frame`` (link frames, HCS/FCS, segmentation),
``data`` (the Data types, scaler-units, units), ``apdu`` (GET / SET / ACTION /
SECURITY services, DAR), ``oads`` (the default OAD table with OBIS codes and the
DL/T 645-2007 data identifiers of the same quantities).  On top: ``driver``
(reading on the one transport), ``scan``, ``points`` and ``schema`` (the
configuration).  Registered as a plug-in like every protocol: this folder and
one entry-point line are all it took.
"""
