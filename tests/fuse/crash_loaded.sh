#!/usr/bin/env bash
# The fsync-heavy crash test in its loaded form: two copies at once, each
# killing its daemon QCFS_CRASH_ITERATIONS times (16 by default). Alone it
# passed even while its harness let a workload write beside a dead mount;
# two at once showed that about one run in ten.
#   tests/fuse/crash_loaded.sh BUILD_DIR
set -u
bin="$1/bin/crash_test"
filter="--gtest_filter=Crash.SigkillDuringFsyncHeavyWritesLosesNothingFsynced:Crash.SigkillKeepsWhatEverySyncCallMadeDurable"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$bin" "$filter" >"$out/a" 2>&1 &
a=$!
"$bin" "$filter" >"$out/b" 2>&1 &
b=$!
status=0
wait "$a" || status=1
wait "$b" || status=1
for f in "$out/a" "$out/b"; do
  grep -E "kills|Failure|iteration|PASSED|FAILED" "$f"
done
exit $status
