#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit and
# integration: real FUSE mounts, so run as root with /dev/fuse available).
#
#   scripts/test.sh                      everything
#   scripts/test.sh -L unit              only a ctest label (unit, integration)
#   scripts/test.sh --sanitize address   ASan+UBSan build (or: thread)
# Other arguments go to ctest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

sanitize=""
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize="$2"; shift 2 ;;
    --sanitize=*) sanitize="${1#*=}"; shift ;;
    *) ctest_args+=("$1"); shift ;;
  esac
done

ensure_packages "${QCFS_BUILD_PACKAGES[@]}" "${QCFS_TEST_PACKAGES[@]}"
build="$QCFS_ROOT/build"
extra=()
if [ -n "$sanitize" ]; then
  build="$QCFS_ROOT/build-$sanitize"
  extra=(-DQCFS_SANITIZE="$sanitize" -DCMAKE_BUILD_TYPE=RelWithDebInfo)
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export TSAN_OPTIONS="suppressions=$QCFS_ROOT/tests/tsan.supp halt_on_error=1"
fi
configure_and_build "$build" ON "${extra[@]}"

if [ ! -e /dev/fuse ]; then
  log "/dev/fuse is missing: integration tests will fail"
fi
log "Running tests"
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 1200 "${ctest_args[@]}"
