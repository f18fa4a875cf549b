"""What the tests and the benchmarks both stand on: real services and simulated meters as processes.

``services`` starts private Mosquitto, VictoriaMetrics and influxd instances on
free loopback ports; ``simproc`` runs ``meterlink simulate`` (the installed
wheel's under ``make test``) and ``meterlink`` itself.  A benchmark imports
this package, never ``tests``.  It is not part of the wheel.
"""
