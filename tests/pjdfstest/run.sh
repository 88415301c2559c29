#!/usr/bin/env bash
# The POSIX file system test suite pjdfstest (github.com/pjd/pjdfstest)
# against a fresh QCFS volume: builds pjdfstest from a source tree or a
# tarball in a temp dir, makes and mounts a volume (the daemon in the
# foreground, its log in a file), runs `prove -r` on the suite as root from
# inside the mount, prints prove's summary and a line of totals, unmounts,
# and runs `qcfs check` on the volume.
#
# Usage: run.sh BUILD_DIR PJDFSTEST [MOUNT_OPTIONS]
#   BUILD_DIR      a build with bin/qcfs
#   PJDFSTEST      a pjdfstest source tree or .tar.gz of one
#   MOUNT_OPTIONS  passed as `qcfs mount -o MOUNT_OPTIONS` (e.g. no_writeback_cache)
# Environment:
#   QCFS_PJDFSTEST_DIR=DIR   run in DIR (any file system, e.g. ext4) instead
#                            of a QCFS mount, for comparison
#   QCFS_PJDFSTEST_KEEP=1    keep the temp dir (image, logs, prove's output)
#   QCFS_PJDFSTEST_TESTS=T   run only these tests (space-separated, relative
#                            to the suite's tests/, e.g. "chown chmod/00.t")
# Needs root, /dev/fuse, a C compiler, autoconf, automake, libtool, libssl-dev
# and perl's prove.
# Exit status: 0 when every pjdfstest test passed, 1 when one failed or
# something went wrong, 77 when PJDFSTEST or a tool is missing (ctest
# reports the test as skipped).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../testutil" && pwd)/scratch_mount.sh"

readonly SKIP=77

build="${1:?usage: run.sh BUILD_DIR PJDFSTEST [MOUNT_OPTIONS]}"
source_arg="${2:?usage: run.sh BUILD_DIR PJDFSTEST [MOUNT_OPTIONS]}"
mount_options="${3:-}"
build="$(cd "$build" && pwd)"
qcfs="$build/bin/qcfs"
target_dir="${QCFS_PJDFSTEST_DIR:-}"
keep="${QCFS_PJDFSTEST_KEEP:-0}"

skip() {
  printf 'skip: %s\n' "$*"
  exit "$SKIP"
}

[[ -e $source_arg ]] || skip "no pjdfstest at $source_arg"
[[ $(id -u) -eq 0 ]] || skip "needs root (pjdfstest changes owners and runs as other users)"
for t in cc make autoreconf prove findmnt timeout; do
  command -v "$t" >/dev/null 2>&1 || skip "$t is not installed"
done
if [[ -z $target_dir ]]; then
  [[ -c /dev/fuse ]] || skip "needs /dev/fuse"
  command -v fusermount3 >/dev/null 2>&1 || skip "fusermount3 is not installed"
  [[ -x $qcfs ]] || { echo "$qcfs is missing: build the qcfs target first" >&2; exit 1; }
fi
source_arg="$(realpath "$source_arg")"

scratch_dir qcfs-pjdfstest
work=""    # the directory the suite runs in

# Whatever happened: remove what the suite left, unmount, make sure the
# daemon is gone, remove the temp dir.
cleanup() {
  local rc=$?
  set +e
  cd /
  if [[ -n $target_dir && -n $work ]]; then
    rm -rf "$work"
  fi
  scratch_unmount
  scratch_finish "$rc" "$keep"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

fail() {
  printf 'FAIL: %s\n' "$1" >&2
  if [[ -n ${2:-} && -s $2 ]]; then
    printf -- '--- %s (last 30 lines):\n' "${2#"$tmp"/}" >&2
    tail -n 30 "$2" >&2
  fi
  exit 1
}

# ---------------------------------------------------------------- build
src="$tmp/pjdfstest"
if [[ -d $source_arg ]]; then
  cp -a "$source_arg" "$src"
else
  mkdir -p "$src"
  tar -xzf "$source_arg" -C "$src" --strip-components=1 || fail "cannot unpack $source_arg"
fi
[[ -f $src/configure.ac && -d $src/tests ]] || fail "$source_arg is not a pjdfstest source tree"
echo "== building pjdfstest"
(cd "$src" && autoreconf -ifs && ./configure && make pjdfstest) >"$logs/build.log" 2>&1 ||
  fail "building pjdfstest failed" "$logs/build.log"

# ---------------------------------------------------------------- mount
if [[ -n $target_dir ]]; then
  work="$(mktemp -d "$target_dir/pjdfstest.XXXXXX")"
  echo "== running in $work ($(findmnt -n -o FSTYPE --target "$work"))"
else
  "$qcfs" mkfs "$img" --size 2G >"$logs/mkfs.log" 2>&1 || fail "qcfs mkfs failed" "$logs/mkfs.log"
  args=(mount -f "$img" "$mnt")
  [[ -n $mount_options ]] && args+=(-o "$mount_options")
  "$qcfs" "${args[@]}" </dev/null >>"$daemon_log" 2>&1 &
  daemon=$!
  for _ in $(seq 300); do
    mounted && break
    alive "$daemon" || break
    sleep 0.1
  done
  mounted || fail "the volume did not mount" "$daemon_log"
  work="$mnt"
  echo "== running on a QCFS mount: $(findmnt -n -o OPTIONS -M "$mnt")"
fi

# ---------------------------------------------------------------- run
tests=()
if [[ -n ${QCFS_PJDFSTEST_TESTS:-} ]]; then
  for t in $QCFS_PJDFSTEST_TESTS; do tests+=("$src/tests/$t"); done
else
  tests=("$src/tests")
fi
prove_rc=0
(cd "$work" && timeout -k 30 3600 prove -r "${tests[@]}") >"$logs/prove.log" 2>&1 </dev/null || prove_rc=$?
# prove's summary report (files that failed, or passed a TODO) and totals.
sed -n '/^Test Summary Report/,$p' "$logs/prove.log"
[[ -n $(sed -n '/^Test Summary Report/p' "$logs/prove.log") ]] || grep -E '^(Files=|Result:|All tests)' "$logs/prove.log"

# Tests run, and of those failed, from prove's "Files=N, Tests=N" and the
# report's "FILE (Wstat: W Tests: N Failed: N)" lines; a file that exited
# badly or ran short of its plan fails with Failed: 0.
total="$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' "$logs/prove.log")"
read -r failed_tests failed_files < <(awk '
  /\(Wstat: / {
    if (entry) files += bad
    wstat = $0; sub(/.*\(Wstat: /, "", wstat); sub(/[^0-9].*/, "", wstat)
    failed = $0; sub(/.*Failed: /, "", failed); sub(/[^0-9].*/, "", failed)
    n += failed
    entry = 1; bad = failed > 0 || wstat != 0
    next
  }
  entry && /^  Parse errors:/ { bad = 1 }
  /^Files=/ { if (entry) files += bad; entry = 0 }
  END { print n + 0, files + 0 }' "$logs/prove.log")

# ---------------------------------------------------------------- unmount, check
if [[ -z $target_dir ]]; then
  cd /
  timeout 300 "$qcfs" umount "$mnt" >"$logs/umount.log" 2>&1 || fail "qcfs umount failed" "$logs/umount.log"
  rc=0
  wait "$daemon" || rc=$?
  daemon=""
  ((rc == 0)) || fail "the daemon exited with status $rc" "$daemon_log"
  "$qcfs" check "$img" >"$logs/check.log" 2>&1 || fail "qcfs check found problems after the run" "$logs/check.log"
fi

[[ -n $total ]] || fail "prove printed no summary (status $prove_rc)" "$logs/prove.log"
echo "pjdfstest: $((total - failed_tests)) of $total tests passed ($failed_tests failed; $failed_files files failed)"
if ((prove_rc != 0 || failed_tests != 0)); then
  fail "pjdfstest failed (prove status $prove_rc)"
fi
