#!/usr/bin/env bash
# Existing test tools against a mounted volume, each checking its own data:
#   - fio writes files and reads them back, checking every block: random
#     data with crc32c verify headers (sequential 1 MiB writes, O_DIRECT and
#     buffered; random 4 KiB writes), compressible blocks that carry their
#     own offset (sequential 64 KiB and random 4 KiB writes), and one block
#     repeated throughout a file (dedup); after an unmount and a remount it
#     verifies the same files again (verify_only), so the data is read from
#     the volume, not from the page cache;
#   - stress-ng file system stressors, one after the other, with --verify
#     (dir, dentry, rename, link, hdd, xattr, fallocate, mmap, flock);
#   - dbench with the client.txt load;
#   - fio verifies its files once more, after those workloads and another
#     remount (by then the cleaner may have moved their chunks);
# then unmounts and runs "qcfs check --full", which must be clean. The
# daemon runs in the foreground with its log in a file: a warning or an
# error in it fails the run, and so does a daemon that does not exit 0.
#
# Usage: stress_test.sh BUILD_DIR   (BUILD_DIR: a build with bin/qcfs)
# Environment:
#   QCFS_STRESS_SECONDS  seconds per stress-ng stressor (default 8); dbench
#                        runs 2.5 times as long. Raise it for a torture run.
#   QCFS_STRESS_FIO_MIB  MiB that fio writes and verifies (default 2048)
#   QCFS_STRESS_WORKERS  workers per stressor and dbench clients (default 2)
#   QCFS_STRESS_KEEP=1   keep the temp dir (image and logs) for a post-mortem
# Needs root, /dev/fuse, fio, stress-ng and dbench.
# Exit status: 0 when everything passed, 1 on a failure, 77 when something
# it needs is missing (ctest reports the test as skipped).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../testutil" && pwd)/scratch_mount.sh"
# (No "producer | grep -q": with pipefail, grep's early exit can fail the
# producer with SIGPIPE. Checks grep captured output or files instead.)

readonly SKIP=77
readonly DBENCH_LOAD=/usr/share/dbench/client.txt
readonly STRESSORS=(dir dentry rename link hdd xattr fallocate mmap flock)

build="${1:?usage: stress_test.sh BUILD_DIR}"
build="$(cd "$build" && pwd)"
qcfs="$build/bin/qcfs"

seconds="${QCFS_STRESS_SECONDS:-8}"
fio_mib="${QCFS_STRESS_FIO_MIB:-2048}"
workers="${QCFS_STRESS_WORKERS:-2}"
keep="${QCFS_STRESS_KEEP:-0}"

skip() {
  printf 'skip: %s\n' "$*"
  exit "$SKIP"
}

[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "QCFS_STRESS_SECONDS must be a positive integer" >&2; exit 1; }
[[ $fio_mib =~ ^[1-9][0-9]*$ ]] || { echo "QCFS_STRESS_FIO_MIB must be a positive integer" >&2; exit 1; }
[[ $workers =~ ^[1-9][0-9]*$ ]] || { echo "QCFS_STRESS_WORKERS must be a positive integer" >&2; exit 1; }
[[ -x $qcfs ]] || { echo "$qcfs is missing: build the qcfs target first" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || skip "needs root"
[[ -c /dev/fuse ]] || skip "needs /dev/fuse"
for t in fio stress-ng dbench fusermount3 findmnt timeout; do
  command -v "$t" >/dev/null 2>&1 || skip "$t is not installed"
done
[[ -f $DBENCH_LOAD ]] || skip "$DBENCH_LOAD is missing (Debian's dbench package ships it)"

# fio's bytes in sixteenths: 6 and 4 of random data written sequentially,
# 3 compressible, 1 repeated, 1 + 1 written at random 4 KiB offsets (the
# slow part).
part=$((fio_mib / 16))
((part > 0)) || part=1
fio_mib=$((part * 16))
image_mib=$((fio_mib * 2 + 4096))

scratch_dir qcfs-stress
tool=""    # pid of the timeout(1) that runs the current tool
summary=()
started=$SECONDS

# Whatever happened: stop a running tool, unmount, make sure the daemon is
# gone, remove the temp dir.
cleanup() {
  local rc=$?
  set +e
  if [[ -n $tool ]]; then
    kill -TERM "$tool" 2>/dev/null
    wait "$tool" 2>/dev/null
  fi
  scratch_unmount
  scratch_finish "$rc" "$keep"
  exit "$rc"
}
trap cleanup EXIT
# INT and TERM end the run through cleanup, which stops the current tool:
# it runs in timeout's own process group, out of the terminal's reach.
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

fail() {
  local log="${2:-}" rc=0
  printf 'FAIL: %s\n' "$1" >&2
  if [[ -n $daemon ]] && ! alive "$daemon"; then
    wait "$daemon" || rc=$?
    daemon=""
    printf 'The daemon is gone: exit status %d%s.\n' "$rc" "$( ((rc > 128)) && echo ", signal $((rc - 128))")" >&2
  fi
  if [[ -n $log && -s $log ]]; then
    printf -- '--- %s (last 30 lines):\n' "${log#"$tmp"/}" >&2
    tail -n 30 "$log" >&2
  fi
  print_summary >&2
  exit 1
}

print_summary() {
  printf '\n== Summary (%d s)\n' "$((SECONDS - started))"
  local line
  for line in "${summary[@]}"; do printf '  %s\n' "$line"; done
}

# step TITLE: starts a step; took: the seconds since.
step() {
  step_started=$SECONDS
  printf '\n== %s\n' "$*"
}
took() { echo "$((SECONDS - step_started)) s"; }

# bounded LIMIT LOG CMD...: CMD with its output in LOG, stopped with all its
# processes after LIMIT seconds (status 124). Waiting on a background job
# lets the INT/TERM traps run at once.
bounded() {
  local limit="$1" log="$2" rc=0
  shift 2
  timeout -k 30 "$limit" "$@" >"$log" 2>&1 </dev/null &
  tool=$!
  wait "$tool" || rc=$?
  tool=""
  return "$rc"
}

mount_volume() {
  "$qcfs" mount -f "$img" "$mnt" </dev/null >>"$daemon_log" 2>&1 &
  daemon=$!
  for _ in $(seq 300); do
    mounted && return 0
    alive "$daemon" || break
    sleep 0.1
  done
  fail "the volume did not mount" "$daemon_log"
}

unmount_volume() {
  local rc=0
  timeout 300 "$qcfs" umount "$mnt" >>"$logs/umount.log" 2>&1 || fail "qcfs umount failed" "$logs/umount.log"
  wait "$daemon" || rc=$?
  daemon=""
  ((rc == 0)) || fail "the daemon exited with status $rc" "$daemon_log"
}

remount() {
  unmount_volume
  mount_volume
}

# The daemon logs EIO, ENOSPC and internal errors as warnings or errors.
check_daemon_log() {
  local bad
  bad="$(grep -E '^qcfs: (warning|error):' "$daemon_log" || true)"
  [[ -z $bad ]] || fail "the daemon logged problems during $1:"$'\n'"$bad"
}

# --- fio ----------------------------------------------------------------

# crc32c fills each block with random data (stored uncompressed) and a
# header naming its offset. verify=pattern writes the pattern instead,
# which compresses; "%o" puts the block's offset in it, so that every block
# differs and one read from the wrong place does not pass.
fio_job="$tmp/verify.fio"
cat >"$fio_job" <<EOF
[global]
directory=$mnt/fio
ioengine=psync
verify=crc32c
do_verify=1
verify_fatal=1
verify_state_save=0
end_fsync=1
group_reporting=1

[seq-direct-1m]
rw=write
bs=1M
direct=1
size=$((part * 6))M

[seq-buffered-1m]
rw=write
bs=1M
size=$((part * 4))M

[seq-compressible-64k]
rw=write
bs=64k
size=$((part * 3))M
verify=pattern
verify_pattern=%o"QCFS keeps data"

[dedup-1m]
rw=write
bs=1M
size=${part}M
verify=pattern
verify_pattern="QCFS keeps one copy"

[rand-4k]
rw=randwrite
bs=4k
size=${part}M

[rand-compressible-4k]
rw=randwrite
bs=4k
size=${part}M
verify=pattern
verify_pattern=%o"QCFS"
EOF

# fio_io LOG READ|WRITE: the bytes the group moved, as fio prints them.
fio_io() {
  sed -n "s/^ *$2: .* io=\([^ ]*\) .*/\1/p" "$1"
}

# fio_verify_only TAG WHEN: reads every block the job file wrote and checks
# it; sets fio_read.
fio_verify_only() {
  local log="$logs/fio-$1.log"
  bounded $((fio_mib / 16 + 120)) "$log" fio --eta=never --verify_only "$fio_job" ||
    fail "fio found wrong data $2" "$log"
  check_daemon_log "fio's verification $2"
  fio_read="$(fio_io "$log" READ)"
  [[ -n $fio_read ]] || fail "fio read nothing $2" "$log"
}

step "mkfs ($image_mib MiB) and mount in $tmp"
"$qcfs" mkfs "$img" --size "${image_mib}M" >"$logs/mkfs.log" 2>&1 || fail "mkfs failed" "$logs/mkfs.log"
mount_volume
mkdir "$mnt/fio"

step "fio: write $fio_mib MiB, then verify every block"
bounded $((fio_mib / 8 + 120)) "$logs/fio-write.log" fio --eta=never "$fio_job" ||
  fail "fio failed (error or wrong data)" "$logs/fio-write.log"
check_daemon_log "fio's writes"
fio_written="$(fio_io "$logs/fio-write.log" WRITE)"
fio_checked="$(fio_io "$logs/fio-write.log" READ)"
echo "wrote $fio_written, verified $fio_checked ($(took))"

step "remount; fio verifies the same files"
remount
fio_verify_only verify-1 "after a remount"
echo "verified $fio_read ($(took))"
# What the volume made of it: compression and dedup ratios.
usage="$("$qcfs" info "$mnt" 2>&1)" || true
usage="${usage%%$'\n'*}"
echo "$usage"
summary+=("fio        wrote $fio_written (random, compressible, repeated; sequential and random 4 KiB), every block verified: $fio_checked after writing, $fio_read after a remount   OK")
summary+=("           volume: ${usage:-?}")

# --- stress-ng ------------------------------------------------------------

# Stressors that check what they read back with --verify (or always).
verifiable="$(stress-ng --verifiable 2>&1 || true)"
mkdir "$mnt/stress-ng"
for s in "${STRESSORS[@]}"; do
  case "$s" in
    # Random 4000-byte O_DIRECT writes at 512-byte offsets: unaligned to
    # pages and chunks, and read back from the volume, not the page cache.
    # (hdd's check compares the first byte of each read; an I/O size that is
    # no multiple of 256 makes that byte differ from block to block.)
    hdd) args=(--hdd-opts 'wr-rnd,rd-seq,direct' --hdd-write-size 4000 --hdd-bytes 256M) ;;
    # A shared mapping of a file on the volume, not anonymous memory. Each
    # page faults in through FUSE: a small mapping still loops a few times.
    mmap) args=(--mmap-file --mmap-bytes 4M) ;;
    fallocate) args=(--fallocate-bytes 256M) ;;
    *) args=() ;;
  esac
  if [[ " ${verifiable//$'\n'/ } " == *" $s "* ]]; then how="verified"; else how="no verify mode, errors checked"; fi
  step "stress-ng $s: $workers workers, $seconds s ($how)"
  log="$logs/stress-ng-$s.log"
  dir="$mnt/stress-ng/$s"
  mkdir "$dir"
  rc=0
  bounded $((seconds * 3 + 60)) "$log" stress-ng --"$s" "$workers" "${args[@]}" --timeout "$seconds" \
    --verify --metrics-brief --temp-path "$dir" || rc=$?
  ((rc == 0)) || fail "stress-ng $s exited with status $rc" "$log"
  bad="$(grep -E '^stress-ng: (fail|error):|skipp' "$log" || true)"
  [[ -z $bad ]] || fail "stress-ng $s reported:"$'\n'"$bad" "$log"
  check_daemon_log "stress-ng $s"
  # It removes what it created: an entry left behind is a lost unlink.
  rmdir "$dir" || fail "stress-ng $s left entries behind: $(find "$dir" -mindepth 1 -maxdepth 2)" "$log"
  ops="$(awk -v s="$s" '$2 == "metrc:" && $4 == s && $5 ~ /^[0-9]+$/ { print $5; exit }' "$log")"
  printf '%s bogo ops (%s)\n' "${ops:-?}" "$(took)"
  summary+=("$(printf 'stress-ng  %-9s  %d workers, %d s, %8s bogo ops, %s   OK' "$s" "$workers" "$seconds" "${ops:-?}" "$how")")
done

# --- dbench ---------------------------------------------------------------

dbench_seconds=$((seconds * 5 / 2))
step "dbench: $workers clients, $dbench_seconds s"
log="$logs/dbench.log"
mkdir "$mnt/dbench"
bounded $((dbench_seconds * 3 + 60)) "$log" dbench -c "$DBENCH_LOAD" -D "$mnt/dbench" -t "$dbench_seconds" "$workers" ||
  fail "dbench failed" "$log"
# dbench checks each call's result against the load file and exits 1 on a
# mismatch; a failed call is also printed as "... failed ...".
bad="$(grep -E 'failed|ERROR' "$log" | grep -v 'failed to create barrier semaphore' || true)"
[[ -z $bad ]] || fail "dbench reported:"$'\n'"$bad" "$log"
check_daemon_log "dbench"
dbench_ops="$(awk '/^ *Operation +Count/ { t = 1; next } t && $2 ~ /^[0-9]+$/ { n += $2 } END { print n + 0 }' "$log")"
dbench_tput="$(sed -n 's/^Throughput \([0-9.]*\) MB\/sec.*/\1 MB\/s/p' "$log")"
echo "$dbench_ops operations, ${dbench_tput:-?} ($(took))"
summary+=("dbench     $workers clients, $dbench_seconds s, $dbench_ops operations (${dbench_tput:-?}), each call's result as the load file expects   OK")

# --- fio again, then check -------------------------------------------------

step "remount; fio verifies its files again, after the other workloads"
remount
fio_verify_only verify-2 "after the other workloads and a remount"
echo "verified $fio_read ($(took))"
summary+=("fio        every block verified again, $fio_read, after the other workloads and a remount   OK")

step "unmount and qcfs check --full"
unmount_volume
check_daemon_log "the unmount"
"$qcfs" check --full "$img" >"$logs/check.log" 2>&1 || fail "qcfs check found problems" "$logs/check.log"
cat "$logs/check.log"
summary+=("qcfs check --full: $(head -n 1 "$logs/check.log" | sed 's/^Checked [^:]*: //')   clean")

print_summary
echo "PASS"
