#!/usr/bin/env bash
# `docker compose` (the CLI-plugin form) on machines whose package registries ship only Debian's
# `docker-compose` (v1.29, Python): the Docker CLI runs this as its `compose` plugin, and it hands
# every command to docker-compose. scripts/setup.sh installs it as
# /usr/local/lib/docker/cli-plugins/docker-compose when `docker compose` does not answer.
# Where a real Compose v2 plugin is installed, setup leaves it alone.
set -euo pipefail
if [ "${1:-}" = "docker-cli-plugin-metadata" ]; then
  version=$(docker-compose version --short 2>/dev/null || echo unknown)
  printf '{"SchemaVersion":"0.1.0","Vendor":"selfalign","Version":"%s","ShortDescription":"%s"}\n' \
    "$version" "Docker Compose (Debian's docker-compose, as a CLI plugin)"
  exit 0
fi
shift   # the CLI passes the plugin's own name ("compose") first
exec docker-compose "$@"
