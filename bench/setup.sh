#!/usr/bin/env bash
# Installs the peers and load tools the benchmarks use, from Debian's packages:
#   haproxy, nginx + its stream module   the balancers bench/compare.mjs measures Baton against
#   nginx, redis-server, iperf3          backends
#   wrk, redis-tools (redis-benchmark), iperf3, socat   load and test clients
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
  haproxy nginx libnginx-mod-stream wrk iperf3 redis-server redis-tools socat >/dev/null
# The benchmarks start their own processes, on free ports of 127.0.0.1: services the packages may
# have started (nginx on :80, redis on :6379) are left alone.
test -f /usr/lib/nginx/modules/ngx_stream_module.so || {
  echo "bench/setup.sh: ngx_stream_module.so missing after installing libnginx-mod-stream" >&2
  exit 1
}
echo "bench peers installed: $(haproxy -v | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1 | head -1);" \
  "$(redis-server --version | cut -d' ' -f1-3); $(iperf3 --version | head -1 | cut -d' ' -f1-2);" \
  "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
