"""Package discovery for the wheel: one import namespace, ``meterlink``, over the design's folders.

The source keeps the folders the design names (``gateway/``, ``drivers/``,
``simulators/``, ``config/profiles/``); the wheel installs them as one
top-level package so nothing collides with another distribution's
``gateway`` or ``drivers``::

    gateway/          -> meterlink          (core, engine, apps)
    drivers/          -> meterlink.drivers
    simulators/       -> meterlink.simulators
    config/profiles/  -> meterlink.profiles

Every folder with an ``__init__.py`` under those is a package, found here and
never listed by hand: a list kept by hand once shipped a gateway without its
sinks while CI was green.
"""

from pathlib import Path

from setuptools import setup

FOLDERS = {"meterlink": "gateway", "meterlink.drivers": "drivers", "meterlink.simulators": "simulators",
           "meterlink.profiles": "config/profiles"}


def packages() -> list[str]:
    found = []
    for name, folder in FOLDERS.items():
        root = Path(folder)
        for init in sorted(root.rglob("__init__.py")):
            rel = init.parent.relative_to(root)
            found.append(".".join([name, *rel.parts]) if rel.parts else name)
    return found


setup(packages=packages(), package_dir=FOLDERS)
