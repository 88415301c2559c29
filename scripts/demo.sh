#!/usr/bin/env bash
# Installs what is missing, builds, and shows QCFS at work on a volume in a
# temp dir: mkfs, mount, copy a real tree twice, snapshot, diff, restore,
# info, unmount, check.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_packages "${QCFS_BUILD_PACKAGES[@]}"
configure_and_build "$QCFS_ROOT/build" OFF -- qcfs
qcfs="$QCFS_ROOT/build/bin/qcfs"
tree="${QCFS_DEMO_TREE:-/usr/include}"

work="$(mktemp -d /tmp/qcfs-demo.XXXXXX)"
export QCFS_RUNTIME_DIR="$work/run"
cleanup() {
  if mountpoint -q "$work/mnt" 2>/dev/null; then
    "$qcfs" umount "$work/mnt" 2>/dev/null || fusermount3 -u -z "$work/mnt" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/mnt"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
timed() {
  local start end
  printf '\n\033[1m$ %s\033[0m\n' "$*"
  start=$(date +%s%N)
  "$@"
  end=$(date +%s%N)
  local ms=$(( (end - start) / 1000000 ))
  printf '  (%d.%03d s)\n' $((ms / 1000)) $((ms % 1000))
}

step "$qcfs" mkfs "$work/demo.img" --size 4G --compression zstd:3
step "$qcfs" mount "$work/demo.img" "$work/mnt"
step df -h "$work/mnt"
timed cp -a "$tree" "$work/mnt/tree"
timed "$qcfs" sync "$work/mnt"  # durable now (sync(1) cannot promise that on a FUSE mount)
step "$qcfs" info "$work/mnt"
timed "$qcfs" snapshot create "$work/mnt" first-copy
timed cp -a "$tree" "$work/mnt/tree-copy"
step "$qcfs" info "$work/mnt"
victim="$work/mnt/tree/$(ls "$work/mnt/tree" | grep '\.h$' | head -1)"
step sh -c "echo 'an accidental edit' > $victim"
step rm -rf "$work/mnt/tree-copy"
step "$qcfs" snapshot diff "$work/mnt" first-copy
step ls "$work/mnt/.snapshots/first-copy"
timed "$qcfs" snapshot restore "$work/mnt" first-copy
step "$qcfs" snapshot list "$work/mnt"
timed diff -r --no-dereference "$tree" "$work/mnt/tree"
echo "  identical: the edit is undone"
timed "$qcfs" umount "$work/mnt"
step "$qcfs" check "$work/demo.img"
step "$qcfs" mount "$work/demo.img" "$work/mnt"
timed diff -r --no-dereference "$tree" "$work/mnt/tree"
echo "  identical after the restore and a remount"
step "$qcfs" umount "$work/mnt"
step du -h --apparent-size "$work/demo.img"
step du -h "$work/demo.img"
printf '\nDone: the image was a sparse file; it is removed now.\n'
