#!/usr/bin/env bash
# Backing up an app's volume with wharf (a restic-format repository: deduplicated, compressed,
# encrypted, read back before it counts), next to `tar | zstd` of the whole volume, same run.
#
#   bash bench/backup.sh [WHARF_BINARY]      # SIZE_MB=1024 CHANGE_PCT=10 by default
#
# The volume: SIZE_MB of files of 8 MiB, half incompressible (random), half text-like. Then
# CHANGE_PCT of the files are rewritten and both are run again. Prints a Markdown table: time and
# bytes added to the repository (wharf), time and archive size (tar | zstd -3, all of it each
# time, as a nightly script does).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/server.sh

SIZE_MB=${SIZE_MB:-1024}
CHANGE_PCT=${CHANGE_PCT:-10}
for t in zstd tar python3; do
  command -v $t >/dev/null || { echo "bench/backup.sh: $t is missing: apt-get install -y $t" >&2; exit 1; }
done

start_server "${1:-}"
"$WHARF" apps create vol --static >/dev/null
vol="$work/data/volumes/vol"
mkdir -p "$vol"
files=$((SIZE_MB / 8))
python3 - "$vol" "$files" <<'PY'
import os, sys, random
vol, n = sys.argv[1], int(sys.argv[2])
words = [b"wharf", b"backup", b"volume", b"restic", b"chunk", b"zstd", b"table", b"row"]
rng = random.Random(7)
for i in range(n):
    with open(os.path.join(vol, f"f{i:04}.bin"), "wb") as f:
        if i % 2 == 0:
            f.write(os.urandom(8 << 20))
        else:
            f.write(b" ".join(rng.choice(words) for _ in range(1 << 20))[: 8 << 20])
PY
sync

repo_bytes() { du -sb "$work/data/repository" | cut -f1; }
ms() { python3 -c 'import time; print(int(time.time()*1000))'; }

# wharf: a backup, verified (the CLI answers once it is read back).
run_wharf() {
  local before after t0 t1
  before=$(repo_bytes)
  t0=$(ms)
  "$WHARF" backups run vol >/dev/null
  t1=$(ms)
  after=$(repo_bytes)
  echo "$((t1 - t0)) $((after - before))"
}
run_tar() {
  local t0 t1 size
  t0=$(ms)
  tar -C "$vol" -cf - . | zstd -3 -q -T1 -o "$work/vol.tar.zst" -f
  t1=$(ms)
  size=$(stat -c %s "$work/vol.tar.zst")
  echo "$((t1 - t0)) $size"
}
mib() { python3 -c "print(f'{$1/1048576:.1f}')"; }

read -r w1 b1 < <(run_wharf)
read -r z1 s1 < <(run_tar)
# Change CHANGE_PCT of the files (new random bytes), as a day of an app's writes.
changed=$((files * CHANGE_PCT / 100))
for i in $(seq 0 $((changed - 1))); do
  head -c $((8 << 20)) /dev/urandom > "$vol/f$(printf %04d $((i * 100 / CHANGE_PCT % files)))".bin
done
sync
read -r w2 b2 < <(run_wharf)
read -r z2 s2 < <(run_tar)

echo "| ${SIZE_MB} MiB volume | wharf backup (verified) | tar \\| zstd -3 (whole volume) |"
echo "|---|---:|---:|"
echo "| first run: time | ${w1} ms | ${z1} ms |"
echo "| first run: bytes added / written | $(mib "$b1") MiB | $(mib "$s1") MiB |"
echo "| after changing ${CHANGE_PCT}%: time | ${w2} ms | ${z2} ms |"
echo "| after changing ${CHANGE_PCT}%: bytes added / written | $(mib "$b2") MiB | $(mib "$s2") MiB |"
