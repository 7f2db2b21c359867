#!/usr/bin/env bash
# CI only: the base images the Dockerfile and the compose file name, made from Debian's packages
# because no image registry is reachable here. Users keep the official images
# (python:3.11-slim-bookworm, postgres:15-bookworm, orthancteam/orthanc); CI passes these instead:
#
#   arcade-ci/debian:bookworm       mmdebstrap --variant=minbase bookworm | docker import
#   arcade-ci/python:3.11-bookworm  + Debian's python3 (3.11) and python3-venv, the host's CAs for pip
#   arcade-ci/postgres:15-bookworm  + postgresql-15, initialised like the official image (UTF8)
#   arcade-ci/orthanc:bookworm      + orthanc, configured from ORTHANC__* like orthancteam/orthanc
#
# An image already present is kept (`--rebuild` makes them again). Builds run on the host's
# network (`--network host`): the CI daemon gives containers no NAT (see dockerd.sh).
set -euo pipefail
cd "$(dirname "$0")"
DOCKER=${DOCKER:-docker}
REBUILD=${1:-}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}

have() { [ "$REBUILD" != --rebuild ] && $DOCKER image inspect "$1" >/dev/null 2>&1; }
say() { echo "docker/ci/bases.sh: $*"; }

if ! have arcade-ci/debian:bookworm; then
  say "arcade-ci/debian:bookworm from mmdebstrap (minbase, no docs, manuals or translations)"
  mmdebstrap --quiet --variant=minbase \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*' \
    bookworm - \
    "deb $MIRROR bookworm main" "deb $MIRROR bookworm-updates main" "deb $SECURITY bookworm-security main" \
    | $DOCKER import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' - arcade-ci/debian:bookworm
fi

if ! have arcade-ci/python:3.11-bookworm; then
  say "arcade-ci/python:3.11-bookworm (Debian's python3 and python3-venv, the host's CA certificates)"
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp python.Dockerfile "$ctx/Dockerfile"
  mkdir "$ctx/ca-certificates"
  # The certificate authorities this host trusts beyond Debian's (a TLS-inspecting egress, a
  # company CA): pip inside the build must trust them too.
  if [ -d /usr/local/share/ca-certificates ]; then
    cp -rL /usr/local/share/ca-certificates/. "$ctx/ca-certificates/"
  fi
  $DOCKER build --network host -t arcade-ci/python:3.11-bookworm "$ctx"
fi

if ! have arcade-ci/postgres:15-bookworm; then
  say "arcade-ci/postgres:15-bookworm (Debian's postgresql-15)"
  $DOCKER build --network host -t arcade-ci/postgres:15-bookworm -f postgres.Dockerfile .
fi

if ! have arcade-ci/orthanc:bookworm; then
  say "arcade-ci/orthanc:bookworm (Debian's orthanc)"
  $DOCKER build --network host -t arcade-ci/orthanc:bookworm -f orthanc.Dockerfile .
fi
