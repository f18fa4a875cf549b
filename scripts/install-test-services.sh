#!/usr/bin/env bash
# Install the real services the test suite runs against (Mosquitto, VictoriaMetrics, InfluxDB 1.x)
# and the CLIs the tests use (openssl for TLS, promtool to lint /metrics), from Debian's packages.
#
# Why this script exists: the tests never mock the broker or the database; tests/services.py
# starts private instances on free loopback ports.  A fresh Debian machine (a new developer box,
# CI) has neither binary, so `make test` calls this first.  It is idempotent: when everything is
# present it does nothing and touches no network.
#
# It must NOT start the system services: Debian's postinst scripts would start mosquitto on
# 1883 and victoria-metrics on 8428, which would collide with (or be mistaken for) the private
# test instances.  A temporary policy-rc.d returning 101 ("action forbidden") makes invoke-rc.d
# and deb-systemd-invoke skip every start during the install; the original policy-rc.d, if any,
# is put back afterwards.  Units of packages installed here are also disabled at boot.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"

# binary -> Debian package that ships it
declare -A PKG_OF=(
  [mosquitto]=mosquitto             # /usr/sbin/mosquitto (+ /usr/bin/mosquitto_passwd)
  [mosquitto_passwd]=mosquitto
  [victoria-metrics]=victoria-metrics  # /usr/bin/victoria-metrics
  [openssl]=openssl                 # CA/server/client certificates for the TLS tests
  [systemd-analyze]=systemd         # `systemd-analyze verify` of systemd/meterlink.service
  [influxd]=influxdb                # /usr/bin/influxd 1.6.7: the `api: v1` InfluxDB sink tests
  [promtool]=prometheus             # /usr/bin/promtool: `promtool check metrics`; prometheus itself never runs
)

missing=()
for bin in mosquitto mosquitto_passwd victoria-metrics openssl systemd-analyze influxd promtool; do
  if ! command -v "$bin" >/dev/null 2>&1; then
    pkg="${PKG_OF[$bin]}"
    [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "${EUID:-$(id -u)}" -ne 0 ]; then
  echo "install-test-services: missing package(s) ${missing[*]}; run as root or: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "install-test-services: installing ${missing[*]} (system services will not be started)" >&2

policy=/usr/sbin/policy-rc.d
backup=""
restore_policy() {
  if [ -n "$backup" ]; then
    mv -f "$backup" "$policy"
  else
    rm -f "$policy"
  fi
}
if [ -e "$policy" ]; then
  backup="$(mktemp /usr/sbin/policy-rc.d.meterlink-backup.XXXXXX)"
  cp -p "$policy" "$backup"
fi
trap restore_policy EXIT
printf '#!/bin/sh\n# temporary, written by meterlink scripts/install-test-services.sh\nexit 101\n' >"$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

restore_policy
trap - EXIT

# Keep the freshly installed system services off at boot too (tests use private instances).
for pkg in "${missing[@]}"; do
  case "$pkg" in
    mosquitto | victoria-metrics | influxdb | prometheus)
      if [ -d /run/systemd/system ]; then
        systemctl disable --now "$pkg.service" >/dev/null 2>&1 || true
      else
        deb-systemd-helper disable "$pkg.service" >/dev/null 2>&1 || true
        update-rc.d "$pkg" disable >/dev/null 2>&1 || true
      fi
      ;;
  esac
done

# Verify: the system victoria-metrics must not be listening on its default port 8428 (a fresh
# minimal image may lack `ss`, so probe the port with bash's /dev/tcp; the service's own stop
# command only ever stops the packaged daemon, never a test instance).
port_open() { (exec 3<>/dev/tcp/127.0.0.1/8428) 2>/dev/null; }
if port_open; then
  echo "install-test-services: something listens on 127.0.0.1:8428 after install; stopping the system victoria-metrics" >&2
  if [ -d /run/systemd/system ]; then
    systemctl stop victoria-metrics.service >/dev/null 2>&1 || true
  else
    /etc/init.d/victoria-metrics stop >/dev/null 2>&1 || true
  fi
  sleep 1
  if port_open; then
    echo "install-test-services: warning: 127.0.0.1:8428 is still in use (not by the packaged service?)" >&2
  fi
fi

for bin in mosquitto mosquitto_passwd victoria-metrics openssl systemd-analyze influxd promtool; do
  if ! command -v "$bin" >/dev/null 2>&1; then
    echo "install-test-services: $bin still missing after apt-get install" >&2
    exit 1
  fi
done
echo "install-test-services: done" >&2
