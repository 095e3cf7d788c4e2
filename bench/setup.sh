#!/usr/bin/env bash
# Installs the peers and load tools the benchmarks use, from Debian's packages.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
  haproxy nginx libnginx-mod-stream wrk iperf3 redis-server redis-tools socat >/dev/null
echo "bench peers installed: $(nginx -v 2>&1 | head -1); $(redis-server --version | cut -d' ' -f1-3); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
