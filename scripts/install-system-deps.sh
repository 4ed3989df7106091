#!/bin/sh
# Install the Debian packages shutterlog needs, if any is missing. Idempotent and quiet when
# everything is there; uses sudo when not run as root.
set -eu

PACKAGES="postgresql postgresql-contrib postgresql-postgis redis-server gearman-job-server
ffmpeg libpq-dev python3-dev python3-venv gcc wrk"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "shutterlog: installing Debian packages:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
# A fresh machine's unattended upgrades (or another install) may hold dpkg's lock: wait for
# it for up to five minutes rather than fail at once.
WAIT="-o DPkg::Lock::Timeout=300"
$SUDO apt-get $WAIT update -qq
# Debian's packages start their own servers where an init system runs; shutterlog never
# uses them: it starts its own on other ports (scripts/stack.py).
DEBIAN_FRONTEND=noninteractive $SUDO apt-get $WAIT install -y -qq --no-install-recommends $missing
