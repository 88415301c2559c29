# A scratch volume for the shell tests that mount one (tests/tools/stress_test.sh,
# tests/pjdfstest/run.sh): its temp dir, and the teardown that runs whatever
# happened. Sourced, not run; the caller sets $qcfs, and $daemon to the pid of
# the foreground daemon it starts.

# scratch_dir PREFIX: makes the temp dir ($tmp, with $img, $mnt, $logs and
# $daemon_log) and enters it, so that whatever a tool leaves lands there.
scratch_dir() {
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
  img="$tmp/volume.img"
  mnt="$tmp/mnt"
  logs="$tmp/logs"
  daemon_log="$logs/daemon.log"
  daemon=""
  mkdir -p "$mnt" "$logs"
  cd "$tmp"
}

# Mounted, even when its daemon is dead (mountpoint(1) needs a live one).
mounted() { findmnt -rn -M "$mnt" >/dev/null 2>&1; }

alive() {
  local state
  state="$(sed -n 's/^.*) \(.\) .*$/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n $state && $state != Z ]]
}

# Unmounts (qcfs umount, then a lazy detach) and makes sure the daemon is gone.
scratch_unmount() {
  if mounted; then
    timeout 120 "$qcfs" umount "$mnt" >/dev/null 2>&1 || fusermount3 -u -z "$mnt" >/dev/null 2>&1
  fi
  if [[ -n $daemon ]]; then
    for _ in $(seq 300); do alive "$daemon" || break; sleep 0.1; done
    if alive "$daemon"; then
      echo "warning: the daemon (pid $daemon) did not exit after the unmount; killing it" >&2
      kill -TERM "$daemon" 2>/dev/null
      sleep 2
      kill -KILL "$daemon" 2>/dev/null
    fi
    wait "$daemon" 2>/dev/null
  fi
  mounted && fusermount3 -u -z "$mnt" >/dev/null 2>&1
}

# scratch_finish RC KEEP: after a failure the daemon's log; then the temp dir
# removed, unless KEEP is 1 or the volume could not be unmounted.
scratch_finish() {
  local rc="$1" keep="$2"
  cd /
  if ((rc != 0)) && [[ -s $daemon_log ]]; then
    echo "--- daemon log (last 20 lines):" >&2
    tail -n 20 "$daemon_log" >&2
  fi
  if [[ $keep == 1 ]]; then
    echo "kept $tmp (image, logs)"
  elif mounted; then
    echo "warning: $mnt is still mounted; left $tmp in place" >&2
  else
    rm -rf "$tmp"
  fi
}
