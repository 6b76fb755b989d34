#!/usr/bin/env bash
# Set up this machine and start the executor with Docker Compose, ready for clients.
# Works offline: the sandbox and server images are built from a debootstrapped Debian base
# and a wheelhouse made here, so nothing is pulled from a registry. The settings go to .env,
# so plain `docker compose up` / `down` (or `docker-compose`) work afterwards too.
# Usage: scripts/up.sh [extra `compose up` arguments, e.g. -d]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
base=$(python3 -c "from executor.image import default_base; print(default_base())")
server_base=python:3.11-slim
if [ "$base" = offline ]; then
  server_base=$(python3 -c "from executor.image import offline_base_tag; print(offline_base_tag())")
  # The wheelhouse is rebuilt only when what goes into it changed.
  stamp=$(cat pyproject.toml executor/*.py executor/v1/*.py | sha256sum | cut -c1-16)
  if [ "$(cat build/wheels/.stamp 2>/dev/null)" != "$stamp" ]; then
    rm -rf build/wheels
    python3 -m pip wheel -q --disable-pip-version-check --wheel-dir build/wheels . >&2
    echo "$stamp" > build/wheels/.stamp
  fi
fi
python3 -m executor build-image --base "$base" >/dev/null
cat > .env <<ENV
# Written by scripts/up.sh; plain \`docker compose up\` and \`down\` read it.
SELFALIGN_SANDBOX_BASE=$base
SELFALIGN_SERVER_BASE=$server_base
SELFALIGN_PORT=${SELFALIGN_PORT:-50051}
SELFALIGN_METRICS_PORT=${SELFALIGN_METRICS_PORT:-9100}
SELFALIGN_HTTP_PORT=${SELFALIGN_HTTP_PORT:-8080}
SELFALIGN_POOL_SIZE=${SELFALIGN_POOL_SIZE:-2}
ENV
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
"${compose[@]}" build -q >&2   # the layer cache makes an unchanged rebuild a no-op
# A rebuild after a change leaves the old server image untagged: remove it, and only it.
docker image prune -f --filter "label=org.selfalign.role=server" >/dev/null
port=${SELFALIGN_PORT:-50051}
detached=0
for arg in "$@"; do [ "$arg" = "-d" ] || [ "$arg" = "--detach" ] && detached=1; done
if [ "$detached" = 1 ]; then
  "${compose[@]}" up "$@"
  for _ in $(seq 1 120); do
    if python3 -m executor health --target "127.0.0.1:$port" >/dev/null 2>&1; then
      echo "executor ready on 127.0.0.1:$port. Next:" >&2
      echo "  python -m executor info --target 127.0.0.1:$port" >&2
      echo "  python -m executor run-batch programs.jsonl --output results.jsonl --target 127.0.0.1:$port" >&2
      echo "  ${compose[*]} down    # to stop it" >&2
      exit 0
    fi
    sleep 1
  done
  echo "the executor did not become healthy in 120 s; see: ${compose[*]} logs" >&2
  exit 1
fi
echo "starting the executor on 127.0.0.1:$port (Ctrl-C stops it)" >&2
exec "${compose[@]}" up "$@"
