#!/usr/bin/env bash
# Create (once) a private venv holding Home Assistant 2024.3.3, whose own code validates the MQTT
# discovery configs Meterlink publishes (tests/integration/test_homeassistant_real.py runs
# tests/integration/ha_check.py with this venv's python).
#
# Why a venv of its own: Home Assistant pins exact versions of ~80 packages (~430 MB, about 3.5
# minutes of pip on 2 cores) that must not leak into the project's .venv.  Why outside the work tree: a
# clean clone on the same machine (CI) reuses it instead of paying the install again; a fresh
# machine has nothing, so this script, called by the test fixture, builds it from PyPI.
#
# Idempotent: when the venv exists, its stamp matches the pins below and the imports the checker
# needs succeed, it does nothing and touches no network.  Otherwise it removes the half-made venv
# and builds it anew.  A lock serialises concurrent callers (two pytest workers, two checkouts).
#
# Prints the venv's python path on stdout as its last line; everything else goes to stderr.
# Exits non-zero with pip's error tail when the install fails.
set -euo pipefail

HA_VERSION=2024.3.3
# What the checker imports beyond homeassistant's own install_requires: the MQTT integration's
# manifest requirement (homeassistant/components/mqtt/manifest.json of 2024.3.3 pins paho-mqtt
# 1.6.1), which homeassistant.components.mqtt imports at module level.  Everything else is pinned
# by the wheel's own homeassistant/package_constraints.txt (see below).
PINS=("homeassistant==${HA_VERSION}" "paho-mqtt==1.6.1")

PYTHON="${PYTHON:-python3}"
CACHE="${METERLINK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meterlink}"
VENV="$CACHE/ha-${HA_VERSION}"
STAMP="$VENV/.meterlink-ha-installed"
WANT="${PINS[*]}"

# The imports tests/integration/ha_check.py makes; a venv that cannot do them is not usable.
CHECK_IMPORTS='import homeassistant.components.mqtt.sensor, homeassistant.components.mqtt.abbreviations, homeassistant.components.mqtt.models, homeassistant.components.mqtt.discovery, homeassistant.components.sensor, homeassistant.core'

usable() {
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
    && "$VENV/bin/python" -c "$CHECK_IMPORTS" >/dev/null 2>&1
}

mkdir -p "$CACHE"
exec 9>"$CACHE/.ha-${HA_VERSION}.lock"
flock 9

if usable; then
  echo "$VENV/bin/python"
  exit 0
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))' || {
  echo "homeassistant-venv: Home Assistant ${HA_VERSION} needs Python 3.11 or 3.12; $PYTHON is $("$PYTHON" -V 2>&1)" >&2
  exit 1
}

echo "homeassistant-venv: building $VENV (${WANT}); this takes a few minutes once" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
log="$CACHE/.ha-${HA_VERSION}.pip.log"
pip_fail() {
  echo "homeassistant-venv: $1 failed into $VENV; last lines of $log:" >&2
  grep -v "^WARNING: Location '" "$log" | tail -n 25 >&2
  rm -rf "$VENV"
  exit 1
}
pip_install() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input "$@" >>"$log" 2>&1; }
: >"$log"
# Home Assistant's wheel pins its direct requirements but not theirs (home-assistant-bluetooth wants
# any habluetooth >= 0.11): unconstrained, pip backtracks through dozens of releases built for newer
# Home Assistants.  The wheel ships the constraints its release was tested with
# (homeassistant/package_constraints.txt), so install the wheel alone first, then everything under them.
pip_install --no-deps "homeassistant==${HA_VERSION}" || pip_fail "pip install --no-deps homeassistant==${HA_VERSION}"
constraints="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/homeassistant/package_constraints.txt"
[ -f "$constraints" ] || { echo "homeassistant-venv: $constraints missing from the homeassistant wheel" >&2; rm -rf "$VENV"; exit 1; }
pip_install -c "$constraints" "${PINS[@]}" || pip_fail "pip install -c package_constraints.txt ${WANT}"
if ! err="$("$VENV/bin/python" -c "$CHECK_IMPORTS" 2>&1)"; then
  echo "homeassistant-venv: installed, but the checker's imports fail in $VENV:" >&2
  echo "$err" | tail -n 15 >&2
  rm -rf "$VENV"
  exit 1
fi
echo "$WANT" >"$STAMP"
echo "$VENV/bin/python"
