#!/usr/bin/env bash
# User-space instructions per proxied request: a figure the neighbours cannot move.
#
#   bash bench/instructions.sh                 # the working tree's wharf
#   bash bench/instructions.sh path/to/wharf   # another build, to compare two commits
#
# CPU time per request on this shared machine moves by 10% and more between runs, so a change
# worth 3% cannot be seen in bench/run.sh. This runs the gateway under callgrind with wrk
# (1 thread, 50 keep-alive connections) against the same nginx `return 200` backend as
# bench/run.sh, and divides all instructions the gateway ran by the requests it answered. It
# counts user space only: the kernel's share (most of a proxied request) is in docs/benchmarks.md.
# The figure still moves a little (1-3%) with how often the gateway runs out of work and waits,
# so compare two builds one after the other. About 15 seconds; the gateway runs some 50 times
# slower under callgrind.
set -euo pipefail
# A binary given is found from where the script was called.
GIVEN=
if [ $# -ge 1 ]; then
  GIVEN=$(realpath -e "$1") || { echo "bench: no such file: $1" >&2; exit 1; }
fi
cd "$(dirname "$0")/.."

. bench/need.sh
need wrk wrk
need nginx nginx-light
need valgrind valgrind
need curl curl

if [ -n "$GIVEN" ]; then
  WHARF=$GIVEN
  LABEL=$WHARF
else
  cargo build --release -q -p wharf
  WHARF=$PWD/target/release/wharf
  LABEL="wharf $(git describe --always --dirty 2>/dev/null || echo '(working tree)')"
fi

TMP=$(mktemp -d)
chmod 755 "$TMP"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

BACKEND=127.0.0.1:18150
GATEWAY=127.0.0.1:18151
cat > "$TMP/backend.conf" <<CONF
worker_processes 1; daemon off; pid $TMP/nginx.pid; error_log $TMP/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $TMP/t1; proxy_temp_path $TMP/t2; fastcgi_temp_path $TMP/t3;
  uwsgi_temp_path $TMP/t4; scgi_temp_path $TMP/t5;
  server { listen $BACKEND; location / { return 200 "hello, world\n"; } }
}
CONF
cat > "$TMP/wharf.toml" <<TOML
[gateway]
listen = ["$GATEWAY"]
workers = 1
[[site]]
name = "proxy"
hosts = ["proxy.bench"]
upstreams = ["$BACKEND"]
TOML

nginx -c "$TMP/backend.conf" &
PIDS+=($!)
up=
for _ in $(seq 50); do
  if curl -sf -o /dev/null "http://$BACKEND/"; then up=1; break; fi
  sleep 0.1
done
[ -n "$up" ] || { echo "bench: the nginx backend on $BACKEND did not answer" >&2; cat "$TMP/nginx.err" >&2 || true; exit 1; }
(cd "$TMP" && RUST_LOG=warn exec valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out" \
  "$WHARF" gateway --config "$TMP/wharf.toml" --no-watch) >"$TMP/gateway.log" 2>&1 &
GW=$!
PIDS+=($GW)
up=
for _ in $(seq 300); do
  if curl -sf -o /dev/null -H "Host: proxy.bench" "http://$GATEWAY/"; then up=1; break; fi
  sleep 0.2
done
[ -n "$up" ] || { echo "bench: the gateway did not answer under callgrind" >&2; cat "$TMP/gateway.log" >&2; exit 1; }

# The warm-up's requests are counted too: start-up is a few million instructions, under 1%.
total=0
for secs in 3 8; do
  wrk -t1 -c50 -d"${secs}s" -H "Host: proxy.bench" "http://$GATEWAY/" > "$TMP/wrk.txt"
  if grep -q "Non-2xx" "$TMP/wrk.txt"; then cat "$TMP/wrk.txt" >&2; exit 1; fi
  served=$(awk '/requests in/ {print $1}' "$TMP/wrk.txt")
  [ -n "$served" ] || { echo "bench: wrk reported no request count" >&2; cat "$TMP/wrk.txt" >&2; exit 1; }
  total=$((total + served))
done
kill -INT "$GW"
wait "$GW" 2>/dev/null || true
instructions=$(awk '/^(summary|totals):/ {print $2; exit}' "$TMP/callgrind.out" 2>/dev/null || true)
if [ -z "$instructions" ] || [ "$total" -eq 0 ]; then
  echo "bench: callgrind wrote no totals, or no request was answered" >&2
  cat "$TMP/gateway.log" >&2
  exit 1
fi
echo "$LABEL: $total requests, $((instructions / total)) user-space instructions per proxied request"
