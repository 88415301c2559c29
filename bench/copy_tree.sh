#!/usr/bin/env bash
# Copies a directory tree (default /usr/include) onto QCFS with each
# compression and onto the disk's own file system, in one run: wall time of
# `cp -a` (and of the sync that follows), compression and dedup ratios as
# `qcfs info` reports them, identity after a remount, a clean check.
#
#   bench/copy_tree.sh [TREE]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
qcfs="${QCFS_BIN:-$root/build/bin/qcfs}"
tree="${1:-/usr/include}"


work="$(mktemp -d "${QCFS_BENCH_DIR:-/var/tmp}/qcfs-bench.XXXXXX")"
export QCFS_RUNTIME_DIR="$work/run"
cleanup() {
  mountpoint -q "$work/mnt" 2>/dev/null && { "$qcfs" umount "$work/mnt" || fusermount3 -u -z "$work/mnt"; }
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/mnt"

now() { date +%s%N; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

files=$(find "$tree" -type f | wc -l)
bytes=$(du -sb --apparent-size "$tree" | cut -f1)
results=()

# The disk's own file system, same run.
drop_caches
cat $(find "$tree" -type f) > /dev/null 2>&1 || true   # source in the page cache for every target
t0=$(now); cp -a "$tree" "$work/plain"; t1=$(now); sync; t2=$(now)
results+=("$(printf '%-10s %8s %8s %8s %8s %9s' "$(findmnt -no FSTYPE -T "$work")" "$(secs $((t1 - t0)))" "$(secs $((t2 - t1)))" "-" "-" "-")")
rm -rf "$work/plain"

for comp in lz4 zstd:3; do
  rm -f "$work/vol.img"
  "$qcfs" mkfs "$work/vol.img" --size 8G --compression "$comp" > /dev/null
  "$qcfs" mount "$work/vol.img" "$work/mnt"
  t0=$(now); cp -a "$tree" "$work/mnt/tree"; t1=$(now); "$qcfs" umount "$work/mnt"; t2=$(now)
  "$qcfs" mount "$work/vol.img" "$work/mnt"
  one=$("$qcfs" info --json "$work/mnt")
  cp -a "$tree" "$work/mnt/tree2"
  "$qcfs" umount "$work/mnt"
  "$qcfs" mount "$work/vol.img" "$work/mnt"
  two=$("$qcfs" info --json "$work/mnt")
  diff -r --no-dereference "$tree" "$work/mnt/tree" > /dev/null && same=identical || same=DIFFERENT
  "$qcfs" umount "$work/mnt"
  "$qcfs" check "$work/vol.img" > /dev/null && clean=clean || clean=FINDINGS
  ratio=$(echo "$one" | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["compression_ratio"])')
  dedup1=$(echo "$one" | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["dedup_ratio"])')
  dedup2=$(echo "$two" | python3 -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["dedup_ratio"])')
  results+=("$(printf '%-10s %8s %8s %7sx %7sx %8sx  %s, %s' "qcfs $comp" "$(secs $((t1 - t0)))" "$(secs $((t2 - t1)))" "$ratio" "$dedup1" "$dedup2" "$same" "$clean")")
done

echo "$tree: $files files, $(awk -v b="$bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }')"
printf '%-10s %8s %8s %8s %8s %9s\n' target "cp -a s" "flush s" compress dedup "dedup x2"
printf '%s\n' "${results[@]}"
