#!/usr/bin/env bash
# One `wharf server` filled with static apps through its API, one by one as users would create
# them: time from an API call to a live route as the count grows, memory after the fill and after
# churn, start-up time, memory and idle CPU after a restart on the same data, and the dashboard's
# apps page. Prints a Markdown table, each figure beside its target.
#
#   bash bench/scale.sh [WHARF_BINARY]
#
# SCALE_APPS=10000   apps at the end of the fill (route-live samples are taken at 0, a tenth of
#                    it, and all of it)
# SAMPLES=100        route-live samples at each level (they are creates, so they count as apps)
# CHURN=SCALE_APPS/5 extra apps created then deleted after the fill
# IDLE_SECS=60       how long idle CPU is measured after the restart
# SCALE_MAX_MINUTES=120, TIMEOUT=60 (seconds per request): past either, the run stops and says
#                    where it was.
#
# The API answers a create once the app's route is live, so a create's duration is the time to
# live; each sample is then fetched once through the gateway (with the app's Host) to confirm.
# The requests go over one keep-alive connection (bench/scale.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/server.sh

SCALE_APPS=${SCALE_APPS:-10000}
SAMPLES=${SAMPLES:-100}
CHURN=${CHURN:-$((SCALE_APPS / 5))}
IDLE_SECS=${IDLE_SECS:-60}
SCALE_MAX_MINUTES=${SCALE_MAX_MINUTES:-120}
export TIMEOUT=${TIMEOUT:-60}
export DEADLINE=$(($(date +%s) + SCALE_MAX_MINUTES * 60))
command -v python3 >/dev/null || { echo "bench/scale.sh: python3 is missing: apt-get install -y python3" >&2; exit 1; }
[ "$SCALE_APPS" -ge $((SAMPLES * 2)) ] || { echo "bench/scale.sh: SCALE_APPS must be at least 2 x SAMPLES ($SAMPLES)" >&2; exit 1; }

py() { python3 bench/scale.py "$@"; }
say() { echo "bench/scale.sh: $*" >&2; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
rss_mb() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$server/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
# "met" or "**not met**" for an awk condition.
judge() { if awk "BEGIN {exit !($1)}"; then echo met; else echo "**not met**"; fi; }
num() { python3 -c "print(f'{$1:,}')"; }
wait_api() {
  for _ in $(seq 300); do
    curl -sf -o /dev/null "$WHARF_URL/api/v1/openapi.json" && return
    kill -0 "$server" 2>/dev/null || { say "the server exited; its log:"; tail -20 "$work/server.log" >&2; exit 1; }
    sleep 0.1
  done
  say "the API did not answer within 30 s"
  exit 1
}

GATEWAY=127.0.0.1:$(port)
export GATEWAY
start_server "${1:-}" WHARF_HTTP="$GATEWAY" RUST_LOG=warn
wait_api

# Apps are app0, app1, ... in the order they are created; `defined` counts them.
defined=0
declare -A live_med live_p99 live_at
levels=(0 $((SCALE_APPS / 10)) "$SCALE_APPS")
fill_secs=0
for level in "${levels[@]}"; do
  if [ "$level" -gt "$defined" ]; then
    say "filling to $level apps"
    s=$(py fill app "$defined" "$level")
    fill_secs=$(awk -v a="$fill_secs" -v b="$s" 'BEGIN {print a + b}')
    defined=$level
  fi
  [ "$level" = "$SCALE_APPS" ] && rss_filled=$(rss_mb)
  say "$SAMPLES route-live samples at $defined apps"
  live_at[$level]=$defined
  read -r live_med[$level] live_p99[$level] < <(py samples app "$defined" "$SAMPLES")
  defined=$((defined + SAMPLES))
done

say "churn: $CHURN creates, then $CHURN deletes"
py fill churn 0 "$CHURN" >/dev/null
py delete churn 0 "$CHURN" >/dev/null
rss_churned=$(rss_mb)

dashboard=$(py dashboard "app$((SCALE_APPS / 2))" "$(num "$defined")")

# Restart on the same data. Served = the boot reconcile's operation ended and 200 apps spread
# over the range, plus the last one created, answer 200 through the gateway.
checked=$work/checked
python3 -c "
n = $defined
print('\n'.join(f'app{i * n // 200}' for i in range(200)))
print(f'app{n - 1}')" > "$checked"
last_op=$(py last-op)
api=${WHARF_URL#http://}
kill "$server"
wait "$server" 2>/dev/null || true
say "restarting on the same data"
t0=$(now_ms)
env WHARF_DATA="$work/data" WHARF_API="$api" WHARF_HTTP="$GATEWAY" WHARF_HTTPS="127.0.0.1:$(port)" \
  WHARF_ADMIN="127.0.0.1:$(port)" WHARF_LINK="127.0.0.1:$(port)" RUST_LOG=warn \
  "$WHARF" server 2>>"$work/server.log" &
server=$!
py wait-ready "$last_op" "$checked" >/dev/null
startup_ms=$(($(now_ms) - t0))
rss_restarted=$(rss_mb)
say "idle CPU over ${IDLE_SECS} s"
c0=$(cpu_ticks)
sleep "$IDLE_SECS"
c1=$(cpu_ticks)
idle_cpu=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v s="$IDLE_SECS" 'BEGIN {printf "%.2f", d / hz / s * 100}')

top=$SCALE_APPS
zero=${live_med[0]}
rss_ok() { judge "$1 <= 64 && $1 <= $rss_restarted * 1.1"; }
echo "| $(num "$SCALE_APPS") static apps on one server | figure | target |"
echo "|---|---:|---|"
for level in "${levels[@]}"; do
  target=""
  [ "$level" = "$top" ] && target="median ≤ 5 ms and ≤ 2× the 0-app median: $(judge "${live_med[$level]} <= 5 && ${live_med[$level]} <= 2 * $zero")"
  echo "| API call → route live, $(num "${live_at[$level]}") apps defined: median / p99 of $SAMPLES | ${live_med[$level]} / ${live_p99[$level]} ms | $target |"
done
echo "| creating $(num "$SCALE_APPS") apps one by one (API, one connection) | $fill_secs s | |"
echo "| server RSS, $(num "$SCALE_APPS") apps created one by one | $rss_filled MB | ≤ 64 MB and within 10% of the restarted server's: $(rss_ok "$rss_filled") |"
echo "| server RSS after $(num "$CHURN") more creates and deletes | $rss_churned MB | same: $(rss_ok "$rss_churned") |"
echo "| restart on the same data: exec → all served (boot reconcile ended; 201 apps over the range answer 200) | $startup_ms ms | ≤ 2 s: $(judge "$startup_ms <= 2000") |"
echo "| server RSS after the restart, $(num "$defined") apps | $rss_restarted MB | ≤ 64 MB: $(judge "$rss_restarted <= 64") |"
echo "| idle CPU after the restart, over $IDLE_SECS s (share of one core) | $idle_cpu % | ≤ 1%: $(judge "$idle_cpu <= 1") |"
echo "$dashboard"
