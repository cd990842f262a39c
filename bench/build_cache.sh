#!/usr/bin/env bash
# Build cache figures: a Flask + gunicorn app (requirements.txt, Procfile) and an Express app
# (package.json) are deployed twice each from local git repositories; prints the first and
# second deploy times, the size of the second deploy's pre-deploy backup (which holds release
# 1) and of the app's build cache. Needs git, python3 with venv, npm, and the network to the
# package registries.
#
#   bash bench/build_cache.sh [path/to/wharf]    # default: target/release/wharf, else target/debug/wharf
set -euo pipefail

. "$(dirname "$0")/server.sh"
start_server "${1:-}" WHARF_HEALTH_TIMEOUT=30s

repo() { # name, then file=content pairs
  local name=$1; shift
  mkdir -p "$work/$name-src"
  (cd "$work/$name-src" && git init -q -b main && git config user.email b@example.test && git config user.name bench)
  for kv in "$@"; do printf '%s' "${kv#*=}" > "$work/$name-src/${kv%%=*}"; done
  (cd "$work/$name-src" && git add -A && git commit -qm first && git clone -q --bare . "$work/$name.git")
}
ms() { date +%s%3N; }
kb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1024 }'; }

run() { # app
  local app=$1 t0 t1 t2 t3 out
  "$WHARF" apps create "$app" --git "file://$work/$app.git" >/dev/null
  t0=$(ms); "$WHARF" deploy "$app" >/dev/null; t1=$(ms)
  (cd "$work/$app-src" && echo v2 > version && git commit -qam v2 && git push -q "$work/$app.git" main)
  t2=$(ms); out=$("$WHARF" deploy "$app"); t3=$(ms)
  local backup
  backup=$(printf '%s\n' "$out" | sed -n 's/^backup: //p')
  printf '| %s | %s ms | %s ms | %s | %s |\n' "$app" "$((t1 - t0))" "$((t3 - t2))" \
    "$(kb "$backup") kB" "$(du -sk "$work/data/apps/$app/cache" 2>/dev/null | cut -f1 || echo 0) kB"
}

repo flask \
  "app.py=from flask import Flask
app = Flask(__name__)
@app.get('/')
def index():
    return 'flask ' + open('version').read().strip()
" \
  "version=v1" "requirements.txt=flask
gunicorn
" "Procfile=web: .venv/bin/python -m gunicorn app:app --bind \$HOST:\$PORT
"
repo express \
  "server.js=const app = require('express')();
app.get('/', (q, s) => s.send('express ' + require('fs').readFileSync('version', 'utf8').trim()));
app.listen(Number(process.env.PORT), process.env.HOST);
" \
  "version=v1" 'package.json={"name":"web","version":"1.0.0","private":true,"scripts":{"start":"node server.js"},"dependencies":{"express":"^4.21.2"}}'

echo "wharf: $("$WHARF" --version 2>/dev/null || echo "$WHARF")"
echo
echo '| app | first deploy | second deploy | backup before the second deploy | build cache |'
echo '|---|---:|---:|---:|---:|'
run flask
run express
