"""The installed wheel is the product: complete, importable, open-source, and built from every package.

`make test` builds the wheel, installs it non-editable into a fresh venv and names that venv in
``METERLINK_VENV``; the end-to-end tests (tests/simproc.py) then run that venv's `meterlink`.
These tests check the installed artefact itself.  Outside `make test` (a developer running
pytest by hand) the installed-venv tests skip, except under CI, where a missing venv is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from testkit.simproc import INSTALLED_VENV, REPO

# the source folders and the import names the wheel gives them (setup.py)
FOLDERS = {"meterlink.drivers": "drivers", "meterlink.simulators": "simulators", "meterlink.profiles": "config/profiles",
           "meterlink": "gateway"}

# OSI-approved licences a vendor can ship inside a product (issue: BSL 1.1 of dlms-cosem >= 24 cannot).
ALLOWED = ("MIT", "BSD", "Apache", "PSF", "Python Software Foundation", "ISC", "MPL-2.0",
           "Mozilla Public License 2.0", "EPL", "Eclipse Public License", "EDL", "Eclipse Distribution License",
           "LGPL", "GNU Lesser General Public License", "Unlicense", "0BSD", "Zlib")
FORBIDDEN = ("BSL", "Business Source", "SSPL", "Proprietary", "Commercial")


def _installed_python() -> Path:
    if not INSTALLED_VENV:
        if os.environ.get("CI"):
            pytest.fail("CI must test the installed wheel: run `make test`, which sets METERLINK_VENV")
        pytest.skip("METERLINK_VENV is not set: `make test` installs the wheel and sets it")
    return Path(INSTALLED_VENV) / "bin" / "python"


def _run_installed(code: str) -> str:
    r = subprocess.run([str(_installed_python()), "-c", code], capture_output=True, text=True, timeout=120,
                       cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_meterlink_command_runs_the_installed_package_not_the_source_tree() -> None:
    out = _run_installed("import json, meterlink, meterlink.drivers, meterlink.simulators, meterlink.profiles as p;"
                         "print(json.dumps([m.__file__ for m in (meterlink, meterlink.drivers, meterlink.simulators, p)]))")
    for path in json.loads(out):
        assert "site-packages/meterlink/" in path, path
        assert not path.startswith(tuple(str(REPO / folder) for folder in FOLDERS.values())), path
    # one top-level import name: nothing of ours collides with another distribution's `gateway` or `drivers`
    tops = json.loads(_run_installed("import importlib.metadata as md, json;"
                                     "print(json.dumps(sorted({str(f).split('/')[0] for f in md.files('meterlink')})))"))
    assert [t for t in tops if not t.endswith(".dist-info") and t != ".."] == ["meterlink"], tops
    meterlink = Path(INSTALLED_VENV or "") / "bin" / "meterlink"
    r = subprocess.run([str(meterlink), "--help"], capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode == 0 and "simulate" in r.stdout


def test_every_installed_module_imports() -> None:
    """Walk every module the distribution installed and import it: a forgotten package fails here."""
    out = _run_installed(r"""
import importlib, importlib.metadata, json
names = []
for f in importlib.metadata.files("meterlink"):
    if f.suffix == ".py" and ".dist-info" not in str(f):
        mod = str(f)[:-3].replace("/", ".").removesuffix(".__init__")
        importlib.import_module(mod)
        names.append(mod)
print(json.dumps(names))
""")
    names = set(json.loads(out))
    source = {".".join([package, *p.relative_to(REPO / folder).with_suffix("").parts]).removesuffix(".__init__")
              for package, folder in FOLDERS.items() for p in (REPO / folder).rglob("*.py")}
    assert source <= names, f"in the source tree but not in the wheel: {sorted(source - names)}"
    assert {"meterlink.engine.sinks.mqtt", "meterlink.engine.sinks.influx", "meterlink.profiles"} <= names


def test_runtime_dependencies_are_open_source() -> None:
    """Every distribution the installed gateway pulls in carries an allowed OSI licence."""
    out = _run_installed(r"""
import importlib.metadata as md, json, re
seen, todo, found = set(), ["meterlink"], {}
while todo:
    name = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        continue
    seen.add(key)
    dist = md.distribution(name)
    meta = dist.metadata
    classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    found[dist.metadata["Name"]] = {"version": dist.version, "expression": meta.get("License-Expression"),
                                    "license": (meta.get("License") or "")[:200], "classifiers": classifiers}
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        todo.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
print(json.dumps(found))
""")
    found = json.loads(out)
    assert found["dlms-cosem"]["version"] == "21.3.2"
    problems = [p for name, info in found.items() if name != "meterlink" and (p := _licence_problem(name, info))]
    assert not problems, "runtime dependencies outside the OSI allow-list:\n" + "\n".join(problems)


def _licence_problem(name: str, info: dict[str, object]) -> str | None:
    text = " ".join([str(info.get("expression") or ""), str(info.get("license") or ""),
                     *map(str, info.get("classifiers") or [])])  # type: ignore[call-overload]
    if any(bad.lower() in text.lower() for bad in FORBIDDEN) or not any(ok in text for ok in ALLOWED):
        return f"{name} {info.get('version')}: {text.strip()[:120] or 'no licence metadata'}"
    return None


@pytest.mark.parametrize(("info", "allowed"), [
    ({"expression": "BSL-1.1", "license": "", "classifiers": []}, False),          # dlms-cosem 25.x
    ({"expression": None, "license": "Business Source License 1.1", "classifiers": []}, False),
    ({"expression": None, "license": "", "classifiers": ["License :: Other/Proprietary License"]}, False),
    ({"expression": None, "license": "", "classifiers": []}, False),
    ({"expression": "EPL-2.0 OR BSD-3-Clause", "license": "", "classifiers": []}, True),   # paho-mqtt
    ({"expression": None, "license": "MIT", "classifiers": ["License :: OSI Approved :: MIT License"]}, True),
])
def test_licence_allow_list(info: dict[str, object], allowed: bool) -> None:
    assert (_licence_problem("x", info) is None) is allowed


def test_a_new_package_is_in_the_next_wheel_with_no_other_edit(tmp_path: Path) -> None:
    """Adding a folder with an __init__.py under drivers/ is enough for it to ship."""
    tree = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / rel)
    toy = tree / "drivers" / "toyproto"  # installed as meterlink.drivers.toyproto
    toy.mkdir()
    (toy / "__init__.py").write_text('"""A protocol nobody listed."""\n')
    (toy / "codec.py").write_text("X = 1\n")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path / "dist"), str(tree)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("meterlink-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"meterlink/drivers/toyproto/__init__.py", "meterlink/drivers/toyproto/codec.py",
            "meterlink/engine/sinks/mqtt.py", "meterlink/profiles/eastron-sdm630.yaml"} <= names
