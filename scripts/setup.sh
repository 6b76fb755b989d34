#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine: Python packages, a Docker
# engine (when none answers), the tools for the offline image build, and the sandbox image.
set -euo pipefail
cd "$(dirname "$0")/.."
# PyTorch first, pinned to the CPU build that this project's machines carry: an unpinned torch
# would pull several GB of CUDA packages. On a GPU machine, install your CUDA build first.
python3 -c "import torch" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check torch==2.13.0
# The editable install is skipped when pyproject.toml is unchanged since the last one (23 s saved
# on every restart).
stamp_file=.cache/setup.stamp
stamp=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp" ] || ! python3 -c "import importlib.metadata as m, grpc, datasketch, ahocorasick, markdown_it, transformers; m.version('selfalign')" 2>/dev/null; then
  python3 -m pip install -q --disable-pip-version-check -e '.[dev]'
  mkdir -p .cache && echo "$stamp" > "$stamp_file"
fi
# EvalPlus releases for the grading cross-check tests, each in its own folder and without its
# dependencies (a plain install would downgrade protobuf below what gRPC needs).
for v in 0.3.1 0.2.1; do
  dir="$HOME/.cache/selfalign/evalplus-$v"
  [ -d "$dir/evalplus" ] || python3 -m pip install -q --disable-pip-version-check --no-deps --target "$dir" "evalplus==$v"
done
# lcb_runner, as nvidia-livecodebench packages it, for the LiveCodeBench prompt cross-check tests:
# without its dependencies (API clients this project does not use).
lcb_dir="$HOME/.cache/selfalign/nvidia-livecodebench-26.3"
[ -d "$lcb_dir/livecodebench" ] || python3 -m pip install -q --disable-pip-version-check --no-deps --target "$lcb_dir" "nvidia-livecodebench==26.3"
need_apt=()
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)   # Pyright (dev) runs on Node
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  need_apt+=(docker-compose)
fi
if [ ${#need_apt[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# gVisor is optional: with it, the isolation suite runs under runsc too.
if ! command -v runsc >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null 2>&1 \
    || echo "setup: gVisor (runsc) not installed; its tests will be skipped" >&2
fi
# `docker compose` as typed: where the registries ship only Compose v1 (Debian's docker-compose),
# a CLI plugin hands `docker compose ...` to it (scripts/compose-plugin.sh).
if ! docker compose version >/dev/null 2>&1 && command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  install -D -m 0755 scripts/compose-plugin.sh /usr/local/lib/docker/cli-plugins/docker-compose
fi
bash scripts/ensure-docker.sh
echo "setup: sandbox image $(python3 -m executor build-image)" >&2
