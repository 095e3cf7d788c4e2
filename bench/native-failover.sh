#!/usr/bin/env bash
# bench/native-failover.sh PLANE RUNS — the failover bench's HTTP case, repeated: wrk -t2 -c30 -d6s
# through one Baton listener (opaque, dataPlane PLANE: js | native | auto) to 3 nginx
# (master_process off, so one pid is one server); the first nginx is SIGKILLed 3 s into each run
# and restarted after it. Prints wrk's socket errors per run, then Baton's failover count.
# Needs nginx and wrk (Debian packages) and `npm run build`. Loopback only (ports 19100-19103).
set -uo pipefail
plane=${1:-native}
runs=${2:-8}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'kill $bp ${pids[*]} 2>/dev/null; rm -rf "$dir"' EXIT
mkdir -p "$dir/www"
head -c 1024 /dev/zero | tr '\0' a >"$dir/www/k1.bin"
LP=19100
PORTS=(19101 19102 19103)

nginx_on() { # nginx_on PORT: start one nginx, print its pid
  cat >"$dir/ng-$1.conf" <<C
master_process off;
daemon off;
error_log stderr warn;
pid $dir/ng-$1.pid;
events { worker_connections 16384; }
http { access_log off; server { listen 127.0.0.1:$1 backlog=4096; root $dir/www; keepalive_requests 1000000; } }
C
  nginx -e stderr -p "$dir" -c "$dir/ng-$1.conf" >/dev/null 2>&1 &
  echo $!
}

pids=()
for p in "${PORTS[@]}"; do pids+=("$(nginx_on "$p")"); done
cat >"$dir/baton.yaml" <<C
log: { level: info, access: false }
listeners:
  - listen: 127.0.0.1:$LP
    dataPlane: $plane
    backends: [127.0.0.1:${PORTS[0]}, 127.0.0.1:${PORTS[1]}, 127.0.0.1:${PORTS[2]}]
C
node "$root/dist/cli.js" --config "$dir/baton.yaml" >"$dir/baton.log" 2>&1 &
bp=$!
sleep 1
errors=0
for i in $(seq 1 "$runs"); do
  (sleep 3; kill -9 "${pids[0]}") &
  out=$(timeout 20 wrk -t2 -c30 -d6s "http://127.0.0.1:$LP/k1.bin" 2>&1)
  err=$(echo "$out" | grep -i "socket errors\|Non-2xx")
  [ -n "$err" ] && errors=$((errors + 1))
  echo "run $i: $(echo "$out" | grep 'requests in' | xargs) | ${err:-no errors}"
  pids[0]=$(nginx_on "${PORTS[0]}")
  sleep 4 # past the passive cool-down, so the next run's connections reach it again
done
echo "plane $plane: $runs runs, $errors with wrk errors, $(grep -c '"msg":"failover"' "$dir/baton.log") failovers"
[ "$errors" -eq 0 ]
