#!/usr/bin/env bash
# wharf next to nginx and HAProxy, in one run, on this machine.
#
#   bash bench/run.sh            # everything (about 5 minutes; container apps too when a Docker engine answers)
#   DURATION=5 bash bench/run.sh # shorter runs
#   PUBLISH=1 bash bench/run.sh  # and write the results into docs/benchmarks.md
#   ONLY=gateway bash bench/run.sh # the gateway's comparisons alone (proxy, static, TLS), about 7 minutes
#   ROUNDS=1 bash bench/run.sh   # one round of the proxy and handshake comparisons instead of 3
#
# Method: one backend (nginx, one worker, `return 200`), and each proxy under test with ONE worker
# thread pinned to its own core (CPU 1); wrk and the backend share the other core (CPU 0). The
# proxies are measured a second time with the backend moved to their core, wrk alone on the
# other (a small machine, where the gateway and the apps share CPU). Each measurement is a
# warm-up run then a measured run with keep-alive connections. Results go to
# stdout and bench/out/latest.md; docs/benchmarks.md holds the numbers of record.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-3}
LOAD_CPU=${LOAD_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}

. bench/need.sh
need wrk wrk
need nginx nginx-light
need haproxy haproxy
need curl curl
need openssl openssl
need python3 python3

cargo build --release -q -p wharf
WHARF=$PWD/target/release/wharf

OUT=$PWD/bench/out
TMP=$(mktemp -d)
# mktemp makes it 0700: apps' own users must pass through to their folders in the data folder.
chmod 755 "$TMP"
mkdir -p "$OUT" "$TMP/www"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# The same 1 KiB file for both static servers.
head -c 1024 /dev/urandom > "$TMP/www/1k.bin"

BACKEND=127.0.0.1:18100
NGINX_PROXY=127.0.0.1:18101
NGINX_STATIC=127.0.0.1:18102
HAPROXY=127.0.0.1:18103
HAPROXY_ACL=127.0.0.1:18114
WHARF_ADDR=127.0.0.1:18104
WHARF_TLS_PORT=18105
NGINX_TLS_PORT=18106

user_line=""
[ "$(id -u)" = 0 ] && user_line="user root;"

nginx_conf() { # name, server blocks
  cat > "$TMP/$1.conf" <<CONF
worker_processes 1;
daemon off;
$user_line
pid $TMP/$1.pid;
error_log $TMP/$1.err;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/$1-body; proxy_temp_path $TMP/$1-proxy;
  fastcgi_temp_path $TMP/$1-fcgi; uwsgi_temp_path $TMP/$1-uwsgi; scgi_temp_path $TMP/$1-scgi;
  $2
}
CONF
}

nginx_conf backend "server { listen $BACKEND; location / { return 200 \"hello, world\\n\"; } }"
nginx_conf proxy "upstream be { server $BACKEND; keepalive 64; }
  server { listen $NGINX_PROXY; location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
nginx_conf static "server { listen $NGINX_STATIC; root $TMP/www; }"

cat > "$TMP/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind $HAPROXY
  default_backend be
backend be
  server s1 $BACKEND
CFG
# HAProxy as a real front end runs it: the backend chosen by a Host ACL among several.
sed -e "s/^  bind .*/  bind $HAPROXY_ACL/" \
    -e "s/^  default_backend be/  acl is_proxy hdr(host) -i proxy.bench\n  acl is_other hdr(host) -i other.bench\n  use_backend be if is_proxy\n  use_backend other if is_other/" \
    "$TMP/haproxy.cfg" > "$TMP/haproxy-acl.cfg"
printf 'backend other\n  server s1 127.0.0.1:1\n' >> "$TMP/haproxy-acl.cfg"

cat > "$TMP/wharf.toml" <<TOML
[gateway]
listen = ["$WHARF_ADDR"]
workers = 1
https = ["127.0.0.1:$WHARF_TLS_PORT", "[::1]:$WHARF_TLS_PORT"]
# openssl s_time sends no server name: wharf answers it with this host's certificate, as nginx
# does with its only server's.
default_sni = "localhost"
[[site]]
name = "proxy"
hosts = ["proxy.bench"]
upstreams = ["$BACKEND"]
[[site]]
name = "static"
hosts = ["static.bench"]
root = "$TMP/www"
# HTTPS: the certificate wharf generates here is given to nginx too, so both serve the same one.
[[site]]
name = "tls"
hosts = ["localhost"]
root = "$TMP/www"
tls = "self-signed"
https_redirect = false
TOML

start() { # cpu, command...
  local cpu=$1; shift
  taskset -c "$cpu" "$@" >/dev/null 2>&1 &
  LAST=$!
  PIDS+=("$LAST")
}

start "$LOAD_CPU" nginx -c "$TMP/backend.conf"
BACKEND_MASTER=$LAST
start "$SERVER_CPU" nginx -c "$TMP/proxy.conf"
NGINX_PROXY_MASTER=$LAST
start "$SERVER_CPU" nginx -c "$TMP/static.conf"
NGINX_STATIC_MASTER=$LAST
start "$SERVER_CPU" haproxy -f "$TMP/haproxy.cfg" -db
HAPROXY_PID=$LAST
start "$SERVER_CPU" haproxy -f "$TMP/haproxy-acl.cfg" -db
HAPROXY_ACL_PID=$LAST
RUST_LOG=warn start "$SERVER_CPU" "$WHARF" gateway --config "$TMP/wharf.toml" --no-watch
WHARF_PID=$LAST

wait_up() { # addr, host
  for _ in $(seq 100); do
    curl -sf -o /dev/null -H "Host: $2" "http://$1/" && return 0
    curl -s -o /dev/null -H "Host: $2" "http://$1/1k.bin" && return 0
    sleep 0.1
  done
  echo "bench: nothing answers on $1" >&2
  exit 1
}
wait_up $BACKEND x; wait_up $NGINX_PROXY x; wait_up $NGINX_STATIC x; wait_up $HAPROXY x; wait_up $HAPROXY_ACL proxy.bench; wait_up $WHARF_ADDR proxy.bench

# nginx serves HTTPS with the certificate wharf generated (ECDSA P-256), sessions not resumed by
# either (wrk does not resume), TLS 1.2 and 1.3 like wharf.
for _ in $(seq 100); do [ -s "$TMP/certs/tls/cert.pem" ] && break; sleep 0.1; done
nginx_conf tls "server { listen 127.0.0.1:$NGINX_TLS_PORT ssl; listen [::1]:$NGINX_TLS_PORT ssl;
    ssl_certificate $TMP/certs/tls/cert.pem; ssl_certificate_key $TMP/certs/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; root $TMP/www; }"
start "$SERVER_CPU" nginx -c "$TMP/tls.conf"
NGINX_TLS_MASTER=$LAST
for port in $WHARF_TLS_PORT $NGINX_TLS_PORT; do
  for _ in $(seq 100); do curl -skf -o /dev/null "https://localhost:$port/1k.bin" && break; sleep 0.1; done
done

# Runs wrk and prints "req/s p99_ms cpu_us": cpu_us is the CPU time (user + system) the server
# process PID spent per request during the measured run, or "-" without a PID. Throughput is
# capped by the core wrk and the backend share; CPU per request is what the server itself costs.
measure() { # url, host, [pid]
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H "Host: $2" "$1" >/dev/null
  local t0; t0=$(ticks "${3:-}")
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $2" "$1" > "$TMP/wrk.txt"
  local t1; t1=$(ticks "${3:-}")
  if grep -q "Non-2xx" "$TMP/wrk.txt"; then
    echo "bench: $1 answered errors:" >&2; cat "$TMP/wrk.txt" >&2; exit 1
  fi
  local rps p99 n cpu
  rps=$(awk '/^Requests\/sec/ {print $2}' "$TMP/wrk.txt")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$TMP/wrk.txt")
  n=$(awk '/requests in/ {print $1}' "$TMP/wrk.txt")
  cpu=-
  [ -n "${3:-}" ] && cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", (b-a)/hz*1e6/n}')
  echo "$rps $p99 $cpu"
}

# utime + stime of a process, in clock ticks.
ticks() { # [pid]
  [ -n "$1" ] || { echo 0; return; }
  awk '{print $14 + $15}' "/proc/$1/stat"
}

# The worker of an nginx started with one worker process.
nginx_worker() { pgrep -P "$1" | head -1; }

# The same with a new connection (and so a full TLS handshake) for every request; prints
# "conn/s p99_ms cpu_us", cpu_us being the server's CPU time per connection.
measure_close() { # url, host, pid
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -H "Host: $2" -H "Connection: close" "$1" >/dev/null
  local t0; t0=$(ticks "$3")
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $2" -H "Connection: close" "$1" > "$TMP/wrk.txt"
  local t1; t1=$(ticks "$3")
  local rps p99 n
  rps=$(awk '/^Requests\/sec/ {print $2}' "$TMP/wrk.txt")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$TMP/wrk.txt")
  n=$(awk '/requests in/ {print $1}' "$TMP/wrk.txt")
  echo "$rps $p99 $(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", (b-a)/hz*1e6/n}')"
}

rss() { # pid -> "rss_kb peak_kb"
  awk '/^VmRSS/ {r=$2} /^VmHWM/ {h=$2} END {print r, h}' "/proc/$1/status"
}

# The median of each column of a file of "a b c" lines.
medians() { # file
  local cols=() c
  for c in 1 2 3; do
    cols+=("$(cut -d' ' -f"$c" "$1" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')")
  done
  echo "${cols[*]}"
}

read -r direct_rps direct_p99 _ < <(measure "http://$BACKEND/" x)
# The proxies take turns for ROUNDS rounds and each figure is the median of its rounds: a burst
# from the machine's neighbours then hits one round of every proxy, not one proxy's only figure.
for _ in $(seq "$ROUNDS"); do
  measure "http://$WHARF_ADDR/" proxy.bench "$WHARF_PID" >> "$TMP/rounds.wharf"
  measure "http://$NGINX_PROXY/" x "$(nginx_worker "$NGINX_PROXY_MASTER")" >> "$TMP/rounds.nginx"
  measure "http://$HAPROXY/" x "$HAPROXY_PID" >> "$TMP/rounds.hap"
  measure "http://$HAPROXY_ACL/" proxy.bench "$HAPROXY_ACL_PID" >> "$TMP/rounds.hacl"
done
read -r wharf_rps wharf_p99 wharf_cpu < <(medians "$TMP/rounds.wharf")
read -r nginx_rps nginx_p99 nginx_cpu < <(medians "$TMP/rounds.nginx")
read -r hap_rps hap_p99 hap_cpu < <(medians "$TMP/rounds.hap")
read -r hacl_rps hacl_p99 hacl_cpu < <(medians "$TMP/rounds.hacl")
# A small machine, where the gateway shares its core with the app: the backend moves to the
# proxies' core and wrk keeps the other to itself. A cheaper proxy then leaves the app more of
# the core, which shows as requests/s.
move_backend() { # cpu
  local p
  for p in "$BACKEND_MASTER" $(pgrep -P "$BACKEND_MASTER"); do taskset -a -p -c "$1" "$p" >/dev/null; done
}
move_backend "$SERVER_CPU"
for _ in $(seq "$ROUNDS"); do
  measure "http://$WHARF_ADDR/" proxy.bench "$WHARF_PID" >> "$TMP/shared.wharf"
  measure "http://$HAPROXY/" x "$HAPROXY_PID" >> "$TMP/shared.hap"
  measure "http://$HAPROXY_ACL/" proxy.bench "$HAPROXY_ACL_PID" >> "$TMP/shared.hacl"
done
move_backend "$LOAD_CPU"
read -r swharf_rps swharf_p99 swharf_cpu < <(medians "$TMP/shared.wharf")
read -r shap_rps shap_p99 shap_cpu < <(medians "$TMP/shared.hap")
read -r shacl_rps shacl_p99 shacl_cpu < <(medians "$TMP/shared.hacl")
read -r wstat_rps wstat_p99 wstat_cpu < <(measure "http://$WHARF_ADDR/1k.bin" static.bench "$WHARF_PID")
read -r nstat_rps nstat_p99 nstat_cpu < <(measure "http://$NGINX_STATIC/1k.bin" x "$(nginx_worker "$NGINX_STATIC_MASTER")")
read -r wtls_rps wtls_p99 wtls_cpu < <(measure "https://localhost:$WHARF_TLS_PORT/1k.bin" localhost "$WHARF_PID")
read -r ntls_rps ntls_p99 ntls_cpu < <(measure "https://localhost:$NGINX_TLS_PORT/1k.bin" localhost "$(nginx_worker "$NGINX_TLS_MASTER")")
for _ in $(seq "$ROUNDS"); do
  measure_close "https://localhost:$WHARF_TLS_PORT/1k.bin" localhost "$WHARF_PID" >> "$TMP/rounds.whs"
  measure_close "https://localhost:$NGINX_TLS_PORT/1k.bin" localhost "$(nginx_worker "$NGINX_TLS_MASTER")" >> "$TMP/rounds.nhs"
done
read -r whs_rps whs_p99 whs_cpu < <(medians "$TMP/rounds.whs")
read -r nhs_rps nhs_p99 nhs_cpu < <(medians "$TMP/rounds.nhs")
# New handshakes one at a time (openssl s_time -new: full handshakes, no request), so latency
# rather than a saturated core sets the rate; connections per second.
s_time() { # port, -tls1_3 or -tls1_2
  taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$1" -new "$2" -time 5 2>/dev/null \
    | awk '/connections in [0-9.]+s;/ {printf "%.0f", $1 / 5; exit}'
}
wst13=$(s_time "$WHARF_TLS_PORT" -tls1_3); nst13=$(s_time "$NGINX_TLS_PORT" -tls1_3)
wst12=$(s_time "$WHARF_TLS_PORT" -tls1_2); nst12=$(s_time "$NGINX_TLS_PORT" -tls1_2)

read -r wharf_rss wharf_hwm < <(rss "$WHARF_PID")

# 10,000 routes: the same static file through a gateway with 10,000 sites (one host each), to
# show that route lookup stays flat, and what the routes cost in memory.
WHARF10K=127.0.0.1:18107
{
  printf '[gateway]\nlisten = ["%s"]\nworkers = 1\n' "$WHARF10K"
  for i in $(seq 1 10000); do
    printf '[[site]]\nname = "s%d"\nhosts = ["s%d.bench"]\nroot = "%s"\n' "$i" "$i" "$TMP/www"
  done
} > "$TMP/wharf10k.toml"
RUST_LOG=warn start "$SERVER_CPU" "$WHARF" gateway --config "$TMP/wharf10k.toml" --no-watch
WHARF10K_PID=$LAST
for _ in $(seq 300); do curl -sf -o /dev/null -H "Host: s5000.bench" "http://$WHARF10K/1k.bin" && break; sleep 0.1; done
read -r w10k_rps w10k_p99 _ < <(measure "http://$WHARF10K/1k.bin" s5000.bench)
read -r w10k_rss w10k_hwm < <(rss "$WHARF10K_PID")
kill "$WHARF10K_PID" 2>/dev/null || true
# nginx with the same 10,000 server blocks.
NGINX10K=127.0.0.1:18108
servers=$(for i in $(seq 1 10000); do printf 'server { listen %s; server_name s%d.bench; root %s; }\n' "$NGINX10K" "$i" "$TMP/www"; done)
nginx_conf n10k "server_names_hash_max_size 32768; server_names_hash_bucket_size 64;
$servers"
start "$SERVER_CPU" nginx -c "$TMP/n10k.conf"
NGINX10K_MASTER=$LAST
for _ in $(seq 300); do curl -sf -o /dev/null -H "Host: s5000.bench" "http://$NGINX10K/1k.bin" && break; sleep 0.1; done
read -r n10k_rps n10k_p99 _ < <(measure "http://$NGINX10K/1k.bin" s5000.bench)
read -r n10k_rss n10k_hwm < <(rss "$(pgrep -P "$NGINX10K_MASTER" | head -1)")
kill "$NGINX10K_MASTER" 2>/dev/null || true
read -r hap_rss hap_hwm < <(rss "$HAPROXY_PID")
read -r nginx_rss nginx_hwm < <(rss "$(pgrep -P "$NGINX_PROXY_MASTER" | head -1)")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
report=$(cat <<MD
Machine: $(nproc) cores, ${cpu_model:-unknown CPU}, Linux $(uname -r)
Versions: $(nginx -v 2>&1 | sed 's/.*: //'), HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}'), wharf $(git rev-parse --short HEAD)
Method: one worker each, pinned to CPU $SERVER_CPU; wrk (1 thread, $CONNS keep-alive connections, ${WARMUP}s warm-up then ${DURATION}s) and the backend on CPU $LOAD_CPU. Proxies are measured again with the backend on CPU $SERVER_CPU too (sharing the proxy's core). Proxies and new handshakes: median of $ROUNDS interleaved rounds.

| target | requests/s | p99 ms | CPU µs/request | RSS after run |
|---|---:|---:|---:|---:|
| backend direct (nginx return 200) | $direct_rps | $direct_p99 | | |
| wharf proxy | $wharf_rps | $wharf_p99 | $wharf_cpu | ${wharf_rss} kB (peak ${wharf_hwm} kB) |
| nginx proxy | $nginx_rps | $nginx_p99 | $nginx_cpu | ${nginx_rss:-?} kB |
| HAProxy proxy, one default backend | $hap_rps | $hap_p99 | $hap_cpu | ${hap_rss} kB (peak ${hap_hwm} kB) |
| HAProxy proxy, backend chosen by a Host ACL | $hacl_rps | $hacl_p99 | $hacl_cpu | |
| wharf proxy, sharing its core with the backend | $swharf_rps | $swharf_p99 | $swharf_cpu | |
| HAProxy proxy, one default backend, sharing its core with the backend | $shap_rps | $shap_p99 | $shap_cpu | |
| HAProxy proxy, Host ACL, sharing its core with the backend | $shacl_rps | $shacl_p99 | $shacl_cpu | |
| wharf static 1 KiB | $wstat_rps | $wstat_p99 | $wstat_cpu | |
| nginx static 1 KiB | $nstat_rps | $nstat_p99 | $nstat_cpu | |
| wharf HTTPS 1 KiB, keep-alive | $wtls_rps | $wtls_p99 | $wtls_cpu | |
| nginx HTTPS 1 KiB, keep-alive | $ntls_rps | $ntls_p99 | $ntls_cpu | |
| wharf HTTPS, new handshake per request | $whs_rps | $whs_p99 | $whs_cpu | |
| nginx HTTPS, new handshake per request | $nhs_rps | $nhs_p99 | $nhs_cpu | |

| ratio | value | target |
|---|---:|---:|
| wharf proxy / HAProxy (default backend; Host ACL) | $(ratio "$wharf_rps" "$hap_rps"); $(ratio "$wharf_rps" "$hacl_rps") | ≥ 1.15 |
| wharf proxy CPU per request / HAProxy's (default backend; Host ACL) | $(ratio "$wharf_cpu" "$hap_cpu"); $(ratio "$wharf_cpu" "$hacl_cpu") | ≤ 0.85 |
| requests/s within reach: backend direct / HAProxy (default backend; Host ACL); wrk and the backend share one core, so no proxy serves more than the backend alone | $(ratio "$direct_rps" "$hap_rps"); $(ratio "$direct_rps" "$hacl_rps") | |
| wharf proxy p99 / HAProxy's (default backend; Host ACL) | $(ratio "$wharf_p99" "$hap_p99"); $(ratio "$wharf_p99" "$hacl_p99") | ≤ 1.0 |
| proxy sharing its core with the backend (wrk alone on the other): wharf / HAProxy requests/s (default backend; Host ACL) | $(ratio "$swharf_rps" "$shap_rps"); $(ratio "$swharf_rps" "$shacl_rps") | |
| the same, CPU per request, wharf / HAProxy (default backend; Host ACL) | $(ratio "$swharf_cpu" "$shap_cpu"); $(ratio "$swharf_cpu" "$shacl_cpu") | |
| wharf proxy / nginx proxy | $(ratio "$wharf_rps" "$nginx_rps") | |
| wharf proxy / backend direct | $(ratio "$wharf_rps" "$direct_rps") | ≥ 0.70 |
| wharf static / nginx static | $(ratio "$wstat_rps" "$nstat_rps") | ≥ 1.0 |
| wharf static / nginx static, CPU per request (nginx's µs ÷ wharf's) | $(ratio "$nstat_cpu" "$wstat_cpu") | |
| wharf static with 10,000 routes / with 3 routes | $(ratio "$w10k_rps" "$wstat_rps") | ≈ 1.0 (flat) |
| wharf / nginx, both with 10,000 routes | $(ratio "$w10k_rps" "$n10k_rps") | |
| wharf HTTPS / nginx HTTPS, keep-alive | $(ratio "$wtls_rps" "$ntls_rps") | ≥ 1.0 |
| wharf HTTPS / nginx HTTPS, new handshakes | $(ratio "$whs_rps" "$nhs_rps") | ≥ 1.0 |
| wharf CPU per new handshake / nginx's | $(ratio "$whs_cpu" "$nhs_cpu") | |
| wharf / nginx, full handshakes one at a time (openssl s_time -new; TLS 1.3, TLS 1.2: $wst13 / $nst13, $wst12 / $nst12 per second) | $(ratio "$wst13" "$nst13"); $(ratio "$wst12" "$nst12") | |

MD
)
# ONLY=gateway: the gateway comparisons alone (for repeated runs of the proxy and TLS figures).
if [ "${ONLY:-}" = gateway ]; then
  echo "$report" | tee "$OUT/latest.md"
  exit 0
fi

# wharf server: idle memory with 20 apps, and time from an API call to a live route.
SERVER_DATA=$TMP/server
# No link: bench/link.sh, later in this run, needs the link's port (7443) for its own server.
RUST_LOG=warn WHARF_DATA=$SERVER_DATA WHARF_API=127.0.0.1:18110 WHARF_HTTP=127.0.0.1:18111 WHARF_ADMIN=127.0.0.1:18112 WHARF_HTTPS=127.0.0.1:18113 WHARF_LINK=off \
  start "$SERVER_CPU" "$WHARF" server
SERVER_PID=$LAST
for _ in $(seq 100); do [ -s "$SERVER_DATA/admin.token" ] && curl -sf -o /dev/null http://127.0.0.1:18110/api/v1/openapi.json && break; sleep 0.1; done
TOKEN=$(cat "$SERVER_DATA/admin.token")
times=()
for i in $(seq -w 1 20); do
  # The API answers once the route is live, so the call's duration is the time to live.
  t=$(curl -s -o "$TMP/create.json" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d "{\"name\":\"site$i\",\"kind\":\"static\"}" http://127.0.0.1:18110/api/v1/apps)
  grep -q '"status":"succeeded"' "$TMP/create.json" || { echo "bench: create failed: $(cat "$TMP/create.json")" >&2; exit 1; }
  curl -sf -o /dev/null -H "Host: site$i.localhost" http://127.0.0.1:18111/ || { echo "bench: site$i not live" >&2; exit 1; }
  times+=("$t")
done
live_ms=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]*1000}')
live_max_ms=$(printf '%s\n' "${times[@]}" | sort -n | tail -1 | awk '{printf "%.1f", $1*1000}')
# A process app: create → instance started → health check → route live.
t0=$(date +%s.%N)
curl -s -o "$TMP/create.json" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"pyapp","settings":{"run":"exec python3 -m http.server $PORT --bind $HOST"}}' http://127.0.0.1:18110/api/v1/apps
proc_ms=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", (b-a)*1000}')
grep -q '"status":"succeeded"' "$TMP/create.json" || { echo "bench: process app failed: $(cat "$TMP/create.json")" >&2; exit 1; }

# Deploys. A static site from a local git repository (file://) to live, five times with a new
# commit each; and a process app whose Procfile has no build step, so the whole deploy time is
# wharf's own overhead (fetch, backup, start, health check, swap, drain).
export WHARF_URL=http://127.0.0.1:18110 WHARF_TOKEN=$TOKEN
deploy_ms() { # app, repo -> milliseconds of `wharf deploy` until the release is live
  local t0 t1
  t0=$(date +%s%N)
  "$WHARF" deploy "$1" --git "file://$2" --ref main > "$TMP/deploy.out" 2>&1 \
    || { echo "bench: deploy of $1 failed:" >&2; cat "$TMP/deploy.out" >&2; exit 1; }
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000000 ))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
git_commit() { # repo, message
  git -C "$1" add -A && git -C "$1" -c user.name=bench -c user.email=bench@localhost commit -qm "$2"
}
SITE_REPO=$TMP/site-repo
git init -q -b main "$SITE_REPO"
"$WHARF" apps create docs --static >/dev/null
static_times=()
for i in 1 2 3 4 5; do
  echo "<h1>version $i</h1>" > "$SITE_REPO/index.html"
  git_commit "$SITE_REPO" "v$i"
  static_times+=("$(deploy_ms docs "$SITE_REPO")")
  curl -sf -H "Host: docs.localhost" http://127.0.0.1:18111/ | grep -q "version $i" \
    || { echo "bench: docs does not serve version $i" >&2; exit 1; }
done
static_deploy_ms=$(printf '%s\n' "${static_times[@]}" | median)
PROC_REPO=$TMP/proc-repo
git init -q -b main "$PROC_REPO"
echo 'web: exec python3 -m http.server $PORT --bind $HOST' > "$PROC_REPO/Procfile"
"$WHARF" apps create web >/dev/null
proc_times=()
for i in 1 2 3 4 5; do
  echo "version $i" > "$PROC_REPO/version.txt"
  git_commit "$PROC_REPO" "v$i"
  proc_times+=("$(deploy_ms web "$PROC_REPO")")
  curl -sf -H "Host: web.localhost" http://127.0.0.1:18111/version.txt | grep -q "version $i" \
    || { echo "bench: web does not serve version $i" >&2; exit 1; }
done
proc_deploy_ms=$(printf '%s\n' "${proc_times[@]}" | median)
sleep 2 # let the server settle before reading its idle memory
read -r server_rss server_hwm < <(rss "$SERVER_PID")

# 200 apps: create more static apps, then time the API's app list and read the memory.
for i in $(seq -w 21 200); do
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"name\":\"more$i\",\"kind\":\"static\"}" http://127.0.0.1:18110/api/v1/apps
done
list_times=()
for _ in $(seq 10); do
  list_times+=("$(curl -s -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $TOKEN" http://127.0.0.1:18110/api/v1/apps)")
done
list_ms=$(printf '%s\n' "${list_times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]*1000}')
sleep 2
read -r server200_rss server200_hwm < <(rss "$SERVER_PID")

report+=$'\n\n'$(cat <<MD
| wharf server | value | target |
|---|---:|---:|
| RSS with 23 apps defined (21 static, 2 process), idle | ${server_rss} kB | < 30 MB |
| API call → route live, static app (median of 20; max) | ${live_ms} ms (max ${live_max_ms} ms) | < 50 ms |
| API call → route live, Python process app (start + health check) | ${proc_ms} ms | |
| static site deploy from a local git repo to live (median of 5; all) | ${static_deploy_ms} ms (${static_times[*]}) | < 1000 ms |
| process app deploy with no build step, i.e. wharf's overhead (median of 5; all) | ${proc_deploy_ms} ms (${proc_times[*]}) | < 2000 ms |
| RSS with 203 apps defined (200 static), idle | ${server200_rss} kB | |
| API app list with 203 apps (median of 10) | ${list_ms} ms | |
| wharf gateway with 10,000 routes: RSS after the run; static 1 KiB | ${w10k_rss} kB (peak ${w10k_hwm} kB); ${w10k_rps} req/s | |
| nginx with 10,000 server blocks: worker RSS after the run; static 1 KiB | ${n10k_rss:-?} kB; ${n10k_rps} req/s | |
MD
)
# Container apps next to process apps (bench/containers.sh), when a Docker engine answers.
if docker info >/dev/null 2>&1; then
  containers=$(bash bench/containers.sh "$WHARF" | sed '1,2d')
  report+=$'\n\nContainer apps (bench/containers.sh: a Python app from a Dockerfile next to the same app as a process):\n\n'"$containers"
else
  report+=$'\n\nContainer apps: not measured, no Docker engine answered (see bench/containers.sh).'
fi
# Backups (bench/backup.sh): a 1 GiB volume, then again after changing 10% of it, next to tar | zstd.
backup=$(bash bench/backup.sh "$WHARF")
report+=$'\n\nBackups (bench/backup.sh: an app volume of 1 GiB, half random, half text, then 10% of its files rewritten):\n\n'"$backup"
# Many apps on one server (bench/scale.sh): 10,000 static apps created one by one through the API.
scale=$(bash bench/scale.sh "$WHARF")
report+=$'\n\nScale (bench/scale.sh: static apps created one by one through the API, then churn, then a restart):\n\n'"$scale"

# Apps on another machine and tunnels over links (bench/link.sh), next to going direct, socat and
# stunnel; it makes a network namespace, so it needs root.
if [ "$(id -u)" = 0 ]; then
  links=$(bash bench/link.sh "$WHARF")
  report+=$'\n\nLinks (bench/link.sh: an app on an agent in a network namespace, and a TCP tunnel over the link):\n\n'"$links"
else
  report+=$'\n\nLinks: not measured, bench/link.sh needs root (it makes a network namespace).'
fi
echo "$report" | tee "$OUT/latest.md"

# PUBLISH=1: the results replace the block between the markers in docs/benchmarks.md.
if [ "${PUBLISH:-0}" = 1 ]; then
  python3 - "$OUT/latest.md" docs/benchmarks.md "$(date -u +%Y-%m-%d)" <<'PY'
import sys
latest, doc, day = sys.argv[1], sys.argv[2], sys.argv[3]
begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
text = open(doc).read()
if begin not in text or end not in text:
    sys.exit(f"bench: {doc} has no {begin} … {end} block to replace")
head, rest = text.split(begin, 1)
_, tail = rest.split(end, 1)
body = f"{begin}\n_Generated by `PUBLISH=1 bash bench/run.sh` on {day}._\n\n{open(latest).read().strip()}\n{end}"
open(doc, "w").write(head + body + tail)
print(f"bench: results written to {doc}")
PY
fi
