#!/usr/bin/env bash
# CI only: a Docker daemon for `make docker-test` on a machine without systemd.
#
#   dockerd.sh start   use the daemon that answers, else start Debian's dockerd in the background
#   dockerd.sh stop    stop the daemon `start` started (none other), and check the host is as found
#
# The daemon started here runs with --iptables=false --ip-forward=false: by default dockerd sets
# net.ipv4.ip_forward=1 and the iptables FORWARD policy to DROP, which changes the network of
# every other test on a shared machine. Without them containers get no NAT to the outside: builds
# use the host's network (`docker build --network host`); containers reach each other on their
# bridge, the host on its bridge address, and the host reaches them through published ports
# (docker-proxy). Its log: /var/log/arcade-ci-dockerd.log.
set -euo pipefail
DOCKER=${DOCKER:-docker}
STATE=/run/arcade-ci-dockerd
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

forwarding() {
  echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)" \
       "forward_policy=$($SUDO iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p')"
}

case "${1:-}" in
start)
  if $DOCKER info >/dev/null 2>&1; then
    echo "dockerd.sh: a Docker daemon already answers; using it"
    exit 0
  fi
  $SUDO mkdir -p "$STATE"
  forwarding | $SUDO tee "$STATE/before" >/dev/null
  $SUDO setsid /usr/sbin/dockerd --iptables=false --ip-forward=false --ip-masq=false \
    --pidfile "$STATE/dockerd.pid" </dev/null >>/var/log/arcade-ci-dockerd.log 2>&1 &
  for _ in $(seq 60); do
    $DOCKER info >/dev/null 2>&1 && { echo "dockerd.sh: started dockerd (pid $(cat "$STATE/dockerd.pid"))"; exit 0; }
    sleep 1
  done
  echo "dockerd.sh: dockerd did not answer within 60 s; see /var/log/arcade-ci-dockerd.log" >&2
  exit 1
  ;;
stop)
  [ -f "$STATE/dockerd.pid" ] || { echo "dockerd.sh: no daemon started by this script"; exit 0; }
  pid=$(cat "$STATE/dockerd.pid")
  $SUDO kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 60); do $SUDO kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  before=$(cat "$STATE/before"); after=$(forwarding)
  $SUDO rm -rf "$STATE"
  if [ "$before" != "$after" ]; then
    echo "dockerd.sh: the host's forwarding changed ($before -> $after)" >&2
    exit 1
  fi
  echo "dockerd.sh: stopped dockerd (pid $pid); host forwarding as found ($after)"
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
