#!/usr/bin/env bash
# Links: what an app on an agent's node and a TCP tunnel over a link cost next to going direct and
# next to plain relays, on one machine. The node is a network namespace on a bridge
# (198.19.250.0/24, made here and removed on exit); the wharf server runs in the root namespace
# with its link listener on the bridge (198.19.250.1:7443), the agent in the namespace.
#
#   bash bench/link.sh [path/to/wharf]    # default: target/release/wharf (built if missing)
#   BYTES=$((256 << 20)) DURATION=3 bash bench/link.sh
#
# Latency: p50 and p99 of a GET answered by a tiny Python server on the node, from the root
# namespace: through the server's gateway and the link (the app placed with
# `wharf apps create --node`), and directly to the same program on the node's address. wrk
# (1 thread, CONNS keep-alive connections, DURATION s after a 1 s warm-up) when installed, else
# REQUESTS sequential curl requests (also with CURL=1).
# Throughput: BYTES (1 GiB) from the root namespace to a socat sink on the node, timed until the
# sink has them all: directly, through a plain socat relay, through stunnel4 (TLS 1.3 with a
# pre-shared key: client in the root namespace, server on the node) and through a wharf tunnel
# (`wharf tunnels add`, listening on the server, to the sink on the node's loopback).
# Needs root, iproute2, util-linux (nsenter), socat, stunnel4, curl, python3; wrk if installed.
# A wharf without `server --link` and `agent` gets its rows marked "not measured"; the rest is
# measured all the same.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5}
CONNS=${CONNS:-1}
REQUESTS=${REQUESTS:-2000}
BYTES=${BYTES:-$((1 << 30))}
TIMEOUT=${TIMEOUT:-300} # seconds any one transfer may take

NET=198.19.250
BR=wlbr NS=wln1 VETH=wlv1
HOST_IP=$NET.1 NODE_IP=$NET.10
# Ports in the node's namespace, which holds nothing else.
APP_PORT=18200 SINK_PORT=18201 STUNNEL_PORT=18202

[ "$(id -u)" = 0 ] || { echo "bench: link.sh makes a network namespace: run it as root" >&2; exit 1; }
. bench/need.sh
need ip iproute2
need ss iproute2
need nsenter util-linux
need socat socat
need curl curl
need python3 python3
command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || need stunnel4 stunnel4
STUNNEL=$(command -v stunnel4 || command -v stunnel)
if ip link show "$BR" >/dev/null 2>&1 || [ -e "/run/netns/$NS" ]; then
  echo "bench: $BR or $NS exists: another link.sh is running, or one was killed (then: ip netns del $NS; ip link del $BR)" >&2
  exit 1
fi

WHARF=${1:-}
if [ -z "$WHARF" ]; then
  [ -x target/release/wharf ] || cargo build --release -q -p wharf
  WHARF=target/release/wharf
fi
WHARF=$(realpath "$WHARF")
links=0
if "$WHARF" server --help 2>/dev/null | grep -q -- '--link' && "$WHARF" agent --help >/dev/null 2>&1; then
  links=1
fi

work=$(mktemp -d)
# mktemp makes it 0700: apps' own users must pass through to their folders in the data folder.
chmod 711 "$work"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  # What still runs on the node (e.g. the agent's app).
  for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip link del "$VETH" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$BR" 2>/dev/null || true
  iptables -D FORWARD -i "$BR" -o "$BR" -j ACCEPT 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# Interrupted too: exit (through the EXIT trap) rather than leave the namespace and rule behind.
trap 'exit 130' INT TERM

# The node: a namespace on the bridge, as wharf_testkit::Bed makes them (docs/testing.md).
ip link add "$BR" type bridge
ip addr add "$HOST_IP/24" dev "$BR"
ip link set "$BR" up
# A Docker engine on the host sets the FORWARD policy to DROP, bridged traffic included.
if command -v iptables >/dev/null 2>&1; then iptables -I FORWARD -i "$BR" -o "$BR" -j ACCEPT; fi
ip netns add "$NS"
ip link add "$VETH" type veth peer name eth0 netns "$NS"
ip link set "$VETH" master "$BR" up
ip -n "$NS" addr add "$NODE_IP/24" dev eth0
ip -n "$NS" link set eth0 up
ip -n "$NS" link set lo up
ip -n "$NS" route add default via "$HOST_IP"
# `ip netns exec` would remount /sys; nsenter execs the program itself (so $! is its pid).
ON_NODE=(nsenter --net="/run/netns/$NS" --)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
listening() { # root|node, port
  local ss=(ss -Hltn "sport = :$2")
  [ "$1" = node ] && ss=("${ON_NODE[@]}" "${ss[@]}")
  for _ in $(seq 200); do [ -n "$("${ss[@]}" 2>/dev/null)" ] && return; sleep 0.05; done
  echo "bench: nothing listens on port $2 in the $1 namespace after 10 s" >&2
  exit 1
}

# The app: a fixed answer over HTTP/1.1 keep-alive. Nagle off: the handler writes head and body
# apart, and the second write would wait for a delayed ACK (40 ms). socketserver, not
# http.server's HTTPServer, which looks its own address up first (no name server is reachable
# from the node).
APP_PY='import http.server, os, socketserver
BODY = b"hello from the node\n"
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        self.send_response(200); self.send_header("content-length", str(len(BODY))); self.end_headers(); self.wfile.write(BODY)
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer((os.environ.get("HOST", "0.0.0.0"), int(os.environ["PORT"])), H).serve_forever()'
# Its twin for the direct measurement: the same program on the node's own address.
HOST=0.0.0.0 PORT=$APP_PORT "${ON_NODE[@]}" python3 -c "$APP_PY" 2>"$work/app.log" &
PIDS+=($!)
listening node $APP_PORT

have_wrk() { [ "${CURL:-0}" != 1 ] && command -v wrk >/dev/null 2>&1; }
# Prints "p50_ms p99_ms" of GET url with the given Host header.
latency() { # url, host
  if have_wrk; then
    wrk -t1 -c"$CONNS" -d1s -H "Host: $2" "$1" >/dev/null
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $2" "$1" >"$work/wrk.txt"
    if grep -qE 'Non-2xx|Socket errors' "$work/wrk.txt"; then
      echo "bench: $1 answered errors:" >&2; cat "$work/wrk.txt" >&2; exit 1
    fi
    awk 'function ms(v) { if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
                          if (v ~ /ms$/) { sub(/ms$/, "", v); return v }
                          sub(/s$/, "", v); return v * 1000 }
         $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
         END { printf "%.3f %.3f\n", p50, p99 }' "$work/wrk.txt"
  else
    for _ in $(seq "$REQUESTS"); do
      curl -sf -o /dev/null --max-time 5 -w '%{time_total}\n' -H "Host: $2" "$1"
    done | sort -n | awk '{ a[NR] = $1 * 1000 } END { printf "%.3f %.3f\n", a[int(NR * 0.5)], a[int(NR * 0.99)] }'
  fi
}
latency_tool() {
  if have_wrk; then echo "wrk, $CONNS keep-alive connection(s), ${DURATION} s"; else echo "curl, $REQUESTS requests one after another"; fi
}

# Sends BYTES of zeros from the root namespace to host:port, ending at a fresh socat sink on the
# node (port SINK_PORT, all addresses); prints MB/s from the first byte sent until the sink has
# read the last, after checking it got them all.
transfer() { # host, port, what
  timeout "$TIMEOUT" "${ON_NODE[@]}" socat -u "TCP-LISTEN:$SINK_PORT,reuseaddr" STDOUT | wc -c >"$work/sink.count" &
  local sink=$! t0 t1 got
  listening node $SINK_PORT
  t0=$(date +%s%N)
  head -c "$BYTES" /dev/zero | timeout "$TIMEOUT" socat -u STDIN "TCP:$1:$2"
  wait "$sink"
  t1=$(date +%s%N)
  got=$(cat "$work/sink.count")
  [ "$got" = "$BYTES" ] || { echo "bench: $3: the sink got $got of $BYTES bytes" >&2; exit 1; }
  awk -v b="$BYTES" -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", b / (ns / 1e9) / 1e6 }'
}

read -r direct_p50 direct_p99 < <(latency "http://$NODE_IP:$APP_PORT/" node)
direct_mbs=$(transfer "$NODE_IP" $SINK_PORT direct)

# A plain relay in the root namespace, one connection.
relay_port=$(port)
socat "TCP-LISTEN:$relay_port,bind=127.0.0.1,reuseaddr" "TCP:$NODE_IP:$SINK_PORT" &
PIDS+=($!)
listening root "$relay_port"
socat_mbs=$(transfer 127.0.0.1 "$relay_port" "socat relay")

# stunnel: TLS 1.3 with a pre-shared key, a fresh 32-byte one.
echo "bench:$(python3 -c 'import secrets; print(secrets.token_hex(32))')" >"$work/psk.txt"
chmod 600 "$work/psk.txt"
stunnel_port=$(port)
cat >"$work/stunnel-node.conf" <<CONF
foreground = yes
pid =
[sink]
accept = $NODE_IP:$STUNNEL_PORT
connect = 127.0.0.1:$SINK_PORT
PSKsecrets = $work/psk.txt
sslVersionMin = TLSv1.3
CONF
# debug = info: the client logs the protocol it negotiated, checked below.
cat >"$work/stunnel-root.conf" <<CONF
foreground = yes
pid =
debug = info
[sink]
client = yes
accept = 127.0.0.1:$stunnel_port
connect = $NODE_IP:$STUNNEL_PORT
PSKsecrets = $work/psk.txt
sslVersionMin = TLSv1.3
CONF
"${ON_NODE[@]}" "$STUNNEL" "$work/stunnel-node.conf" 2>"$work/stunnel-node.log" &
PIDS+=($!)
"$STUNNEL" "$work/stunnel-root.conf" 2>"$work/stunnel-root.log" &
PIDS+=($!)
listening node $STUNNEL_PORT
listening root "$stunnel_port"
stunnel_mbs=$(transfer 127.0.0.1 "$stunnel_port" stunnel)
grep -q 'TLSv1.3' "$work/stunnel-root.log" || { echo "bench: stunnel did not negotiate TLS 1.3:" >&2; cat "$work/stunnel-root.log" >&2; exit 1; }

wharf_p50=- wharf_p99=- tunnel_mbs=-
if [ "$links" = 1 ]; then
  api=$(port) http=$(port)
  WHARF_DATA="$work/server" WHARF_API="127.0.0.1:$api" WHARF_HTTP="127.0.0.1:$http" \
    WHARF_HTTPS="127.0.0.1:$(port)" WHARF_ADMIN="127.0.0.1:$(port)" RUST_LOG=warn \
    "$WHARF" server --link "$HOST_IP:7443" 2>"$work/server.log" &
  PIDS+=($!)
  for _ in $(seq 100); do [ -s "$work/server/admin.token" ] && break; sleep 0.1; done
  [ -s "$work/server/admin.token" ] || { echo "bench: the server did not start:" >&2; tail -20 "$work/server.log" >&2; exit 1; }
  export WHARF_URL="http://127.0.0.1:$api" WHARF_TOKEN
  WHARF_TOKEN=$(cat "$work/server/admin.token")
  listening root 7443
  # The admin token is written before the API listens: wait for the API itself.
  listening root "$api"
  # `wharf nodes add` prints the command to run on the node: wharf agent --join URL --token TOKEN
  join=$("$WHARF" nodes add n1 | grep -o 'wharf agent --join [^ ]* --token [^ ]*') \
    || { echo "bench: 'wharf nodes add n1' printed no 'wharf agent --join' command" >&2; exit 1; }
  read -r _ _ _ join_url _ join_token <<<"$join"
  "${ON_NODE[@]}" "$WHARF" agent --join "$join_url" --token "$join_token" --data "$work/agent" 2>"$work/agent.log" &
  PIDS+=($!)
  up=0
  for _ in $(seq 150); do
    if "$WHARF" nodes 2>/dev/null | grep -w n1 | grep -qiwE 'up|ready|connected|online'; then up=1; break; fi
    sleep 0.2
  done
  [ "$up" = 1 ] || { echo "bench: node n1 is not up after 30 s; wharf nodes:" >&2; "$WHARF" nodes >&2 || true; tail -20 "$work/agent.log" >&2; exit 1; }

  "$WHARF" apps create lk-app --node n1 --run "exec python3 -c '$APP_PY'" >/dev/null
  for _ in $(seq 300); do
    [ "$(curl -s --max-time 2 -H 'Host: lk-app.localhost' "http://127.0.0.1:$http/" || true)" = "hello from the node" ] && break
    sleep 0.2
  done
  read -r wharf_p50 wharf_p99 < <(latency "http://127.0.0.1:$http/" lk-app.localhost)

  tunnel_port=$(port)
  "$WHARF" tunnels add lk-tun --listen "server:127.0.0.1:$tunnel_port" --to "n1:127.0.0.1:$SINK_PORT" >/dev/null
  listening root "$tunnel_port"
  tunnel_mbs=$(transfer 127.0.0.1 "$tunnel_port" "wharf tunnel")
fi

ratio() { [ "$1" = - ] && { echo -; return; }; awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
not_yet() { [ "$links" = 1 ] && echo "$1" || echo "not measured"; }
cpu_model=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
echo "Machine: $(nproc) cores, ${cpu_model:-unknown CPU}, Linux $(uname -r); wharf $(git rev-parse --short HEAD 2>/dev/null || echo "$WHARF")"
echo
echo "| GET to a Python app on the node ($(latency_tool)) | p50 | p99 | p99 vs direct |"
echo '|---|---:|---:|---:|'
printf '| direct: root namespace → the node'"'"'s address | %s ms | %s ms | 1.00 |\n' "$direct_p50" "$direct_p99"
printf '| through the gateway and the link (`apps create --node`) | %s | %s | %s |\n' \
  "$(not_yet "$wharf_p50 ms")" "$(not_yet "$wharf_p99 ms")" "$(ratio "$wharf_p99" "$direct_p99")"
echo
echo "| $((BYTES >> 20)) MiB over TCP, root namespace → socat sink on the node | MB/s | vs socat relay |"
echo '|---|---:|---:|'
printf '| direct | %s | %s |\n' "$direct_mbs" "$(ratio "$direct_mbs" "$socat_mbs")"
printf '| socat relay in the root namespace | %s | 1.00 |\n' "$socat_mbs"
printf '| stunnel4, TLS 1.3 with a pre-shared key | %s | %s |\n' "$stunnel_mbs" "$(ratio "$stunnel_mbs" "$socat_mbs")"
printf '| wharf tunnel over the link | %s | %s |\n' "$(not_yet "$tunnel_mbs")" "$(ratio "$tunnel_mbs" "$socat_mbs")"
if [ "$links" = 0 ]; then
  echo
  echo "Not measured: $WHARF has no \`server --link\` and \`agent\`."
fi
