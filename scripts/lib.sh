# Shared by demo.sh and test.sh: install what is missing, build.
# Sourced, not run.

QCFS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages the build, the tests and the demo need.
QCFS_BUILD_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libfuse3-dev fuse3 librocksdb-dev libxxhash-dev liblz4-dev libzstd-dev liburing-dev
  libssl-dev libcli11-dev libfmt-dev nlohmann-json3-dev libblkid-dev uuid-dev libmount-dev
)
QCFS_TEST_PACKAGES=(
  libgtest-dev libgmock-dev sqlite3 e2fsprogs xfsprogs btrfs-progs attr acl fio stress-ng dbench
  clang-14 libfuzzer-14-dev python3 util-linux
  # pjdfstest (tests/pjdfstest/run.sh) is built from source and run with prove
  autoconf automake libtool libssl-dev perl
)

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages PKG...: apt-get installs those not installed yet.
ensure_packages() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "Installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# configure_and_build BUILD_DIR TESTS(ON|OFF) [CMAKE ARGS...] [-- TARGETS...]
configure_and_build() {
  local dir="$1" tests="$2"
  shift 2
  local cmake_args=() targets=()
  while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then shift; targets=("$@"); break; fi
    cmake_args+=("$1"); shift
  done
  log "Building in ${dir#$QCFS_ROOT/}"
  cmake -S "$QCFS_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQCFS_BUILD_TESTS="$tests" \
    "${cmake_args[@]}" >/dev/null
  local jobs
  jobs="$(nproc)"
  cmake --build "$dir" -j "$jobs" ${targets:+--target "${targets[@]}"}
}
