#!/usr/bin/env bash
# Set up this machine and start the executor with Docker Compose, ready for clients.
# Works offline: the sandbox and server images are built from a debootstrapped Debian base
# and a wheelhouse made here, so nothing is pulled from a registry.
# Usage: scripts/up.sh [extra `compose up` arguments, e.g. -d]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
base=$(python3 -c "from executor.image import default_base; print(default_base())")
if [ "$base" = offline ]; then
  export SELFALIGN_SANDBOX_BASE=offline
  export SELFALIGN_SERVER_BASE=$(python3 -c "from executor.image import offline_base_tag; print(offline_base_tag())")
  rm -rf build/wheels
  python3 -m pip wheel -q --disable-pip-version-check --wheel-dir build/wheels . >&2
else
  export SELFALIGN_SANDBOX_BASE=$base
fi
python3 -m executor build-image --base "$SELFALIGN_SANDBOX_BASE" >/dev/null
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
"${compose[@]}" build
echo "starting the executor on 127.0.0.1:${SELFALIGN_PORT:-50051} (Ctrl-C stops it)" >&2
exec "${compose[@]}" up "$@"
