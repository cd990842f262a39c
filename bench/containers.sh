#!/usr/bin/env bash
# Container apps next to process apps: the time of `wharf deploy` for a one-line code change
# (median of N) for a Python app built from a Dockerfile by the Docker engine and the same app
# run as a process, then the server's RSS idle and with 20 container apps running. Needs
# Debian's docker.io with the engine running and the base image wharf-test/debian:bookworm
# (../shared/recipes/debian-base-image.sh, see docs/testing.md), git and python3.
#
#   bash bench/containers.sh [path/to/wharf] [N]   # default: target/release/wharf, else target/debug/wharf; N=5
set -euo pipefail

N=${2:-5}
APPS=${APPS:-20}
BASE=wharf-test/debian:bookworm
docker info >/dev/null 2>&1 || { echo "bench: no Docker engine answers: apt-get install -y docker.io, then start dockerd" >&2; exit 1; }
docker image inspect "$BASE" >/dev/null 2>&1 \
  || { echo "bench: the image $BASE is missing: make it with ../shared/recipes/debian-base-image.sh" >&2; exit 1; }

. "$(dirname "$0")/server.sh"
start_server "${1:-}" WHARF_HEALTH_TIMEOUT=60s

# Names unique to this run: containers and images are found by their wharf.app label.
prefix=cb$$
names=()
image=wharf-bench/python:$$
bench_cleanup() {
  for app in "${names[@]}"; do
    ids=$(docker ps -aq --filter "label=wharf.app=$app")
    [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    ids=$(docker images -q --filter "label=wharf.app=$app")
    [ -z "$ids" ] || docker rmi -f $ids >/dev/null 2>&1 || true
  done
  docker rmi "$image" >/dev/null 2>&1 || true
  kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"
}
trap bench_cleanup EXIT

ms() { date +%s%3N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$server/status"; }

# As a container's PID 1 the app gets no default action for SIGTERM: it exits when told.
app_py='import http.server, os, signal
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open("version").read().encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("", int(os.environ["PORT"])), H).serve_forever()
'
dockerfile='FROM wharf-test/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
CMD ["python3", "app.py"]
'
repo() { # name, then file=content pairs
  local name=$1; shift
  mkdir -p "$work/$name-src"
  (cd "$work/$name-src" && git init -q -b main && git config user.email b@example.test && git config user.name bench)
  for kv in "$@"; do printf '%s' "${kv#*=}" > "$work/$name-src/${kv%%=*}"; done
  (cd "$work/$name-src" && git add -A && git commit -qm first && git clone -q --bare . "$work/$name.git")
}

redeploys() { # app -> N deploy times in ms, each after a one-line change
  local app=$1 t0 t1 times=()
  for i in $(seq "$N"); do
    (cd "$work/$app-src" && echo "v$i" > version && git commit -qam "v$i" && git push -q "$work/$app.git" main)
    t0=$(ms)
    "$WHARF" deploy "$app" >"$work/deploy.out" 2>&1 || { echo "bench: deploy of $app failed:" >&2; cat "$work/deploy.out" >&2; exit 1; }
    t1=$(ms)
    times+=($((t1 - t0)))
  done
  echo "${times[*]}"
}

idle_rss=$(rss_kb)

proc=$prefix-proc ctr=$prefix-ctr
names+=("$proc" "$ctr")
repo "$proc" "app.py=$app_py" "version=v0" "Procfile=web: exec python3 app.py
"
repo "$ctr" "app.py=$app_py" "version=v0" "Dockerfile=$dockerfile"
"$WHARF" apps create "$proc" --git "file://$work/$proc.git" >/dev/null
"$WHARF" apps create "$ctr" --runtime docker --git "file://$work/$ctr.git" >/dev/null
# First deploys (the container's installs python3 once, or finds it in the engine's cache).
t0=$(ms); "$WHARF" deploy "$proc" >/dev/null; t1=$(ms); proc_first=$((t1 - t0))
t0=$(ms); "$WHARF" deploy "$ctr" >/dev/null; t1=$(ms); ctr_first=$((t1 - t0))
proc_times=$(redeploys "$proc")
ctr_times=$(redeploys "$ctr")

# 20 container apps from one prebuilt image (the same code), all running.
(cd "$work/$ctr-src" && DOCKER_BUILDKIT=0 docker build -q -t "$image" . >/dev/null 2>&1)
t0=$(ms)
for i in $(seq "$APPS"); do
  app=$prefix-$i
  names+=("$app")
  "$WHARF" apps create "$app" --runtime docker >/dev/null
  "$WHARF" deploy "$app" --image "$image" >/dev/null
done
t1=$(ms)
running=0
for app in "${names[@]}"; do running=$((running + $(docker ps -q --filter "label=wharf.app=$app" | wc -l))); done
many_rss=$(rss_kb)
for app in "${names[@]}"; do "$WHARF" apps delete "$app" --yes --purge >/dev/null; done

echo "wharf: $("$WHARF" --version 2>/dev/null || echo "$WHARF")"
echo
echo '| | process app | container app (Dockerfile) |'
echo '|---|---:|---:|'
printf '| first deploy | %s ms | %s ms |\n' "$proc_first" "$ctr_first"
printf '| deploy after a one-line change (median of %s; all) | %s ms (%s) | %s ms (%s) |\n' "$N" \
  "$(tr ' ' '\n' <<<"$proc_times" | median)" "$proc_times" "$(tr ' ' '\n' <<<"$ctr_times" | median)" "$ctr_times"
echo
echo '| wharf server | value |'
echo '|---|---:|'
printf '| RSS idle, no apps | %s kB |\n' "$idle_rss"
printf '| RSS with %s container apps running (plus the container app above; %s of their containers running) | %s kB |\n' "$APPS" "$running" "$many_rss"
printf '| %s container apps created and deployed from one image, in all | %s ms |\n' "$APPS" "$((t1 - t0))"
