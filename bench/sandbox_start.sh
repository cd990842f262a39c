#!/usr/bin/env bash
# Start time of a process app with and without the sandbox: a python3 http.server app is created
# (the CLI returns once it answers its health check through the gateway) and deleted, N times
# each way, interleaved; plus the launcher's own cost (`wharf sandbox-exec -- /bin/true` against
# `/bin/true`). Prints medians in milliseconds.
#
#   bash bench/sandbox_start.sh [path/to/wharf] [N]   # default: target/release/wharf, else target/debug/wharf; N=7
set -euo pipefail

. "$(dirname "$0")/server.sh"
N=${2:-7}
start_server "${1:-}"

ms() { date +%s%N | cut -c1-13; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
run='cd "$WHARF_VOLUME" && exec python3 -m http.server "$PORT" --bind "$HOST"'

on=() off=()
for i in $(seq "$N"); do
  for mode in on off; do
    t0=$(ms)
    "$WHARF" apps create "app-$mode-$i" --run "$run" --health-path / --sandbox "$mode" >/dev/null
    t1=$(ms)
    "$WHARF" apps delete "app-$mode-$i" --yes --purge >/dev/null
    if [ "$mode" = on ]; then on+=($((t1 - t0))); else off+=($((t1 - t0))); fi
  done
done
printf 'app start, sandbox on:  %s ms (median of %s: %s)\n' "$(printf '%s\n' "${on[@]}" | median)" "$N" "${on[*]}"
printf 'app start, sandbox off: %s ms (median of %s: %s)\n' "$(printf '%s\n' "${off[@]}" | median)" "$N" "${off[*]}"

launch() { # command..., 50 runs, prints total ms
  local t0 t1
  t0=$(ms); for _ in $(seq 50); do "$@"; done; t1=$(ms)
  echo $((t1 - t0))
}
direct=$(launch /bin/true)
sandboxed=$(launch "$WHARF" sandbox-exec --write "$work" -- /bin/true)
printf 'exec /bin/true: %s ms per run directly, %s ms through the launcher (50 runs each)\n' \
  "$(awk -v t="$direct" 'BEGIN { printf "%.2f", t / 50 }')" "$(awk -v t="$sandboxed" 'BEGIN { printf "%.2f", t / 50 }')"
