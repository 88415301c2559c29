#!/usr/bin/env bash
# qcfs benchmark, end to end:
#   - argument errors: no mountpoint, a --size or --jobs it cannot parse, a
#     directory that is not a QCFS mount, a volume too small for --size,
#     fio missing from $PATH ("fio is not installed: apt-get install fio");
#   - one quick run of every job on a real mount (--json): each job reports
#     its figures, the compressible and duplicate jobs report the reduction
#     the volume achieved, the daemon's CPU and peak RSS are there; the
#     human summary names each part;
#   - Ctrl-C during a job: the command stops, fio stops, nothing is left
#     under the mountpoint;
# then unmounts and runs "qcfs check", which must be clean. It asserts no
# speed: the benchmark reports, it is not a test of how fast QCFS is.
#
# Usage: benchmark_test.sh BUILD_DIR   (BUILD_DIR: a build with bin/qcfs)
# Needs root, /dev/fuse and fio for the mounted part.
# Exit status: 0 when everything passed, 1 on a failure, 77 when something
# it needs is missing (ctest reports the test as skipped).
set -euo pipefail

readonly SKIP=77
build="${1:?usage: benchmark_test.sh BUILD_DIR}"
build="$(cd "$build" && pwd)"
qcfs="$build/bin/qcfs"
[[ -x $qcfs ]] || { echo "$qcfs is missing: build the qcfs target first" >&2; exit 1; }

fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}
ok() { printf 'ok: %s\n' "$*"; }

# expect_error STATUS TEXT COMMAND...: COMMAND exits STATUS and says TEXT on stderr.
expect_error() {
  local want="$1" text="$2" rc=0
  shift 2
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [[ $rc -eq $want ]] || fail "$* exited $rc, not $want: $(cat "$tmp/err")"
  grep -qF -- "$text" "$tmp/err" || fail "$* did not say '$text': $(cat "$tmp/err")"
  ok "$* -> $want, '$text'"
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/qcfs-benchmark-test.XXXXXX")"
mnt="$tmp/mnt"
export QCFS_RUNTIME_DIR="$tmp/run"
bench_pid=""
cleanup() {
  set +e
  [[ -n $bench_pid ]] && kill -9 "$bench_pid" 2>/dev/null
  if mountpoint -q "$mnt" 2>/dev/null; then
    timeout 120 "$qcfs" umount "$mnt" || fusermount3 -u -z "$mnt"
  fi
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT
mkdir -p "$mnt"

# ---------------------------------------------------------------- argument errors

expect_error 2 "mountpoint is required" "$qcfs" benchmark
expect_error 1 "--size" "$qcfs" benchmark "$tmp" --size lots
expect_error 1 "unknown job 'nope'" "$qcfs" benchmark "$tmp" --jobs seqwrite,nope
expect_error 1 "is not a mounted QCFS volume" "$qcfs" benchmark "$tmp"

# ---------------------------------------------------------------- on a mount

[[ $(id -u) -eq 0 ]] || { echo "skip: needs root"; exit $SKIP; }
[[ -c /dev/fuse ]] || { echo "skip: needs /dev/fuse"; exit $SKIP; }
command -v fio >/dev/null || { echo "skip: fio is not installed"; exit $SKIP; }
command -v python3 >/dev/null || { echo "skip: python3 is not installed"; exit $SKIP; }

"$qcfs" mkfs "$tmp/vol.img" --size 2G >/dev/null
"$qcfs" mount "$tmp/vol.img" "$mnt"

expect_error 1 "fio is not installed: apt-get install fio" env PATH=/nonexistent "$qcfs" benchmark "$mnt" --quick
expect_error 1 "give a smaller --size" "$qcfs" benchmark "$mnt" --size 100G
# Only the metadata job: fio is not needed.
PATH=/nonexistent "$qcfs" benchmark "$mnt" --quick --jobs metadata >"$tmp/out" 2>"$tmp/err" ||
  fail "the metadata job alone needs fio? $(cat "$tmp/err")"
ok "--jobs metadata runs without fio"

# A quick run of every job, on files of 64 MiB.
"$qcfs" benchmark "$mnt" --quick --size 64M --json >"$tmp/run.json" 2>"$tmp/err" ||
  fail "qcfs benchmark --quick failed: $(cat "$tmp/err")"
python3 - "$tmp/run.json" <<'PY' || fail "the JSON report is not what it should be: $(cat "$tmp/run.json")"
import json, sys
r = json.load(open(sys.argv[1]))
jobs = {j["name"]: j for j in r["jobs"]}
want = ["seqwrite", "seqwrite-compressible", "seqwrite-dedup", "seqread", "randread", "randread-direct",
        "randwrite", "randrw", "metadata", "treecopy"]
assert list(jobs) == want, list(jobs)
for name in ["seqwrite", "seqwrite-compressible", "seqwrite-dedup"]:
    assert jobs[name]["write_mib_s"] > 0 and jobs[name]["write_bytes"] == 64 << 20, jobs[name]
    assert jobs[name]["cpu_s_per_gib_written"] > 0, jobs[name]
assert jobs["seqread"]["read_bytes"] == 64 << 20, jobs["seqread"]
for name in ["randread", "randread-direct"]:
    assert jobs[name]["read_iops"] > 0 and jobs[name]["write_iops"] == 0, jobs[name]
assert jobs["randwrite"]["write_iops"] > 0, jobs["randwrite"]
assert jobs["randrw"]["read_iops"] > 0 and jobs["randrw"]["write_iops"] > 0, jobs["randrw"]
m = jobs["metadata"]["metadata"]
assert m["files"] == 2000 and m["create_per_s"] > 0 and m["stat_per_s"] > 0 and m["delete_per_s"] > 0, m
assert m["caches_dropped"], m
assert jobs["treecopy"]["tree"]["files"] > 0 and jobs["treecopy"]["tree"]["copy_s"] > 0, jobs["treecopy"]
# What the volume made of the data: half-compressible data compresses,
# half-duplicate data dedups, random data does neither.
assert jobs["seqwrite-compressible"]["space"]["compression_ratio"] > 1.3, jobs["seqwrite-compressible"]
assert jobs["seqwrite-dedup"]["space"]["dedup_ratio"] > 1.3, jobs["seqwrite-dedup"]
assert 0.9 < jobs["seqwrite"]["space"]["compression_ratio"] < 1.1, jobs["seqwrite"]
assert r["daemon"]["peak_rss_bytes"] > 0 and r["daemon"]["cpu_s_per_gib_written"] > 0, r["daemon"]
assert r["caches_dropped"] and r["sizes"]["seq_bytes"] == 64 << 20, r
PY
ok "--quick --json: every job, its figures, the reduction achieved, the daemon's cost"
leftover="$(find "$mnt" -mindepth 1 -maxdepth 1 -name '.qcfs-benchmark.*')"
[[ -z $leftover ]] || fail "left behind: $leftover"
ok "nothing left under the mountpoint"

"$qcfs" benchmark "$mnt" --quick --size 16M --jobs seqwrite,seqread,randread-direct,randwrite,metadata \
  >"$tmp/summary" 2>"$tmp/err" || fail "qcfs benchmark failed: $(cat "$tmp/err")"
for text in "Sequential: " " read, " " write; Random 4K IOPS: " " read (O_DIRECT), " "Metadata: create/stat/delete " \
  "Daemon: CPU s per GiB written " "peak RSS"; do
  grep -qF -- "$text" "$tmp/summary" || fail "the summary lacks '$text': $(cat "$tmp/summary")"
done
ok "the summary: $(sed -n 3p "$tmp/summary")"

# Ctrl-C while fio runs: the job stops and the temporary directory goes.
"$qcfs" benchmark "$mnt" --quick --size 16M --jobs randread >"$tmp/out" 2>"$tmp/err" &
bench_pid=$!
for ((i = 0; i < 300; i++)); do
  pgrep -P "$bench_pid" -x fio >/dev/null && break
  sleep 0.1
done
fio_pid="$(pgrep -P "$bench_pid" -x fio)" || fail "no fio under qcfs benchmark"
kill -INT "$bench_pid"
rc=0
wait "$bench_pid" || rc=$?
bench_pid=""
[[ $rc -eq 1 ]] || fail "interrupted qcfs benchmark exited $rc: $(cat "$tmp/err")"
grep -qF "interrupted" "$tmp/err" || fail "interrupted qcfs benchmark said: $(cat "$tmp/err")"
leftover="$(find "$mnt" -mindepth 1 -maxdepth 1 -name '.qcfs-benchmark.*')"
[[ -z $leftover ]] || fail "left behind after Ctrl-C: $leftover"
for p in $fio_pid; do kill -0 "$p" 2>/dev/null && fail "fio ($p) still runs after Ctrl-C"; done
ok "Ctrl-C: exit 1, 'interrupted', nothing left behind"

"$qcfs" umount "$mnt"
"$qcfs" check "$tmp/vol.img" >"$tmp/check" || fail "qcfs check after the benchmark: $(cat "$tmp/check")"
ok "qcfs check: clean"
echo "PASS"
