# Sourced by the bench scripts that drive a `wharf server` through its CLI (not run by itself).
#
#   start_server PATH_OR_EMPTY [VAR=VALUE ...]
#
# Picks the wharf binary (the path given, else target/release/wharf, else target/debug/wharf)
# as WHARF, makes a scratch folder as `work`, starts `wharf server` there on free loopback ports
# with the extra variables given, waits for its admin token and exports WHARF_URL and
# WHARF_TOKEN for the CLI. The server is stopped and `work` removed when the script exits.

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() {
  WHARF=${1:-}
  shift || true
  if [ -z "$WHARF" ]; then
    WHARF=target/release/wharf
    [ -x "$WHARF" ] || WHARF=target/debug/wharf
  fi
  WHARF=$(realpath "$WHARF")
  work=$(mktemp -d)
  # mktemp makes it 0700: apps' own users must pass through to their folders in the data folder.
  chmod 711 "$work"
  local api
  api=$(port)
  env WHARF_DATA="$work/data" WHARF_API="127.0.0.1:$api" WHARF_HTTP="127.0.0.1:$(port)" \
    WHARF_HTTPS="127.0.0.1:$(port)" WHARF_ADMIN="127.0.0.1:$(port)" WHARF_LINK="127.0.0.1:$(port)" "$@" \
    "$WHARF" server 2>"$work/server.log" &
  server=$!
  trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 100); do [ -s "$work/data/admin.token" ] && break; sleep 0.1; done
  export WHARF_URL="http://127.0.0.1:$api" WHARF_TOKEN
  WHARF_TOKEN=$(cat "$work/data/admin.token")
}
