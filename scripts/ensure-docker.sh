#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io and start dockerd when none does.
# Idempotent; safe to run on every setup.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
sudo_=""
[ "$(id -u)" = 0 ] || sudo_="sudo"
if ! command -v dockerd >/dev/null 2>&1; then
  echo "ensure-docker: installing Debian's docker.io" >&2
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq docker.io >/dev/null
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
  # Register gVisor when it is installed and no engine config exists yet (we never rewrite one).
  if command -v runsc >/dev/null 2>&1 && [ ! -f /etc/docker/daemon.json ]; then
    $sudo_ mkdir -p /etc/docker
    echo '{"runtimes": {"runsc": {"path": "'"$(command -v runsc)"'", "runtimeArgs": ["--network=none"]}}}' \
      | $sudo_ tee /etc/docker/daemon.json >/dev/null
  fi
  echo "ensure-docker: starting dockerd (log: /var/log/selfalign-dockerd.log)" >&2
  $sudo_ sh -c 'nohup dockerd >/var/log/selfalign-dockerd.log 2>&1 &'
fi
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "ensure-docker: the Docker engine did not come up; see /var/log/selfalign-dockerd.log" >&2
tail -n 20 /var/log/selfalign-dockerd.log >&2 || true
exit 1
