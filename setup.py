"""Package discovery for the wheel: every package under the source folders, found, never listed.

pyproject.toml cannot say both "find every package" and "install config/profiles under another
name", so this file does the finding: each folder with an ``__init__.py`` under ``gateway/``,
``drivers/`` and ``simulators/`` is a package, and ``config/profiles`` is installed as
``meterlink_profiles`` so an installed gateway carries its built-in device profiles.  A list kept
by hand once shipped a gateway without its sinks while CI was green.
"""

from setuptools import find_packages, setup

SOURCE_FOLDERS = ("gateway", "drivers", "simulators")
RENAMED = {"meterlink_profiles": "config/profiles"}

packages = [p for p in find_packages(include=[f"{top}*" for top in SOURCE_FOLDERS])
            if p.split(".")[0] in SOURCE_FOLDERS]
setup(packages=[*packages, *RENAMED], package_dir=RENAMED)
