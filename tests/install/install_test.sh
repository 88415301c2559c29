#!/usr/bin/env bash
# Installation and packaging, end to end:
#   - "cmake --install" into a DESTDIR: the files, the umount(8) helper link,
#     the systemd unit naming the installed binary, the man page against the
#     CLI's --help, the bash completion;
#   - the .deb that cpack builds: its dependencies and its files;
#   - real mounts through mount(8) and umount(8), with the installed binary:
#     "mount -t fuse.qcfs" and an fstab line; a plain umount that returns
#     once everything is on the device (the umount.fuse.qcfs helper), also
#     for a daemon killed with SIGKILL; the unit's command lines; a volume on
#     a loop device mounted from fstab, remounted and grown with qcfs resize;
#     an image file moved to another directory.
#
# Usage: install_test.sh BUILD_DIR   (BUILD_DIR: a configured build with bin/qcfs)
# Exit status: 0 when every check ran passed. A part whose tools or
# privileges are missing is skipped, and says so.
set -euo pipefail
# (No "producer | grep -q": with pipefail, grep's early exit can fail the
# producer with SIGPIPE. Checks grep captured output instead.)

build="${1:?usage: install_test.sh BUILD_DIR}"
build="$(cd "$build" && pwd)"

# mount.fuse3 runs "qcfs" with this PATH, whatever the caller's PATH is.
readonly FUSE_HELPER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly PREFIX=/usr/local

checks=0
step() { printf '\n== %s\n' "$*"; }
ok() { checks=$((checks + 1)); printf '  ok    %s\n' "$*"; }
skip() { printf '  skip  %s\n' "$*"; }
fail() {
  printf '  FAIL  %s\n' "$*" >&2
  exit 1
}
have() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }
# A process that runs (a zombie does not: the daemon's parent exits early and
# whoever inherits it may reap it late).
alive() {
  local state
  state="$(sed -n 's/^.*) \(.\) .*$/\1/p' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n $state && $state != Z ]]
}

[[ -x $build/bin/qcfs ]] || fail "$build/bin/qcfs is missing: build the qcfs target first"
[[ -f $build/CPackConfig.cmake ]] || fail "$build is not configured with packaging (no CPackConfig.cmake)"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/qcfs-install-test.XXXXXX")"
root="$tmp/root"
mnt=""
link=""
helper_link=""
loopdev=""
daemon=""

# Whatever happened: detach the mount, let its daemon go, drop the
# /usr/local/bin/qcfs and /sbin/umount.fuse.qcfs links if they are ours,
# detach the loop device, remove the temp dir when nothing is mounted under
# it.
cleanup() {
  local rc=$?
  set +e
  if [[ -n $mnt ]]; then
    fusermount3 -u -z "$mnt" >/dev/null 2>&1 || umount -l "$mnt" >/dev/null 2>&1
  fi
  if [[ -n $daemon ]]; then
    for _ in $(seq 100); do alive "$daemon" || break; sleep 0.1; done
  fi
  if [[ -n $link && -L $link && "$(readlink "$link")" == "$root$PREFIX/bin/qcfs" ]]; then
    rm -f "$link"
  fi
  if [[ -n $helper_link && -L $helper_link && "$(readlink "$helper_link")" == "$root$PREFIX/bin/qcfs" ]]; then
    rm -f "$helper_link"
  fi
  # Still open (by a daemon that has not exited): detached once closed.
  [[ -n $loopdev ]] && losetup -d "$loopdev" >/dev/null 2>&1
  if grep -qF "$tmp" <<<"$(findmnt -rn -o TARGET)"; then
    printf 'warning: something is still mounted under %s; left in place\n' "$tmp" >&2
  else
    rm -rf "$tmp"
  fi
  if [[ $rc -eq 0 ]]; then
    printf '\nPASS: %d checks\n' "$checks"
  else
    printf '\nFAILED (exit %d)\n' "$rc" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- install

step "cmake --install $build --prefix $PREFIX, DESTDIR=$root"
DESTDIR="$root" cmake --install "$build" --prefix "$PREFIX" >"$tmp/install.log" ||
  { cat "$tmp/install.log"; fail "cmake --install failed"; }
ok "installed"

bin="$root$PREFIX/bin/qcfs"
# umount.fuse.qcfs goes where the build says (relative to the prefix, or
# absolute).
helper_dir="$(sed -n 's/^QCFS_UMOUNT_HELPER_DIR:[A-Z]*=//p' "$build/CMakeCache.txt")"
[[ -n $helper_dir ]] || fail "no QCFS_UMOUNT_HELPER_DIR in $build/CMakeCache.txt"
[[ $helper_dir == /* ]] || helper_dir="$PREFIX/$helper_dir"
helper="$root$helper_dir/umount.fuse.qcfs"
unit="$root$PREFIX/lib/systemd/system/qcfs@.service"
completion="$root$PREFIX/share/bash-completion/completions/qcfs"
example="$root$PREFIX/share/doc/qcfs/qcfs.conf.example"
man="$root$PREFIX/share/man/man8/qcfs.8.gz"
[[ -f $man ]] || man="$root$PREFIX/share/man/man8/qcfs.8"

[[ -x $bin ]] || fail "no executable $bin"
ok "binary $PREFIX/bin/qcfs"
# A relative link (as ../bin/qcfs), so that it holds inside DESTDIR and the
# package.
[[ -L $helper ]] || fail "no link ${helper#"$root"}"
helper_target="$(readlink "$helper")"
[[ $helper_target != /* ]] || fail "${helper#"$root"} -> $helper_target: not a relative link"
[[ "$(realpath -ms "$(dirname "$helper")/$helper_target")" == "$(realpath -ms "$bin")" ]] ||
  fail "${helper#"$root"} -> $helper_target does not lead to $PREFIX/bin/qcfs"
[[ -x $helper ]] || fail "${helper#"$root"} does not resolve to an executable"
ok "link ${helper#"$root"} -> $helper_target ($PREFIX/bin/qcfs)"
for f in "$unit" "$completion" "$example" "$man"; do
  [[ -f $f ]] || fail "missing ${f#"$root"}"
  ok "file ${f#"$root"}"
done

# Only these: no test binaries, static libraries or bench tools.
expected="$(printf '%s\n' "$bin" "$helper" "$unit" "$completion" "$example" "$man" | sed "s|^$root||" | sort)"
installed="$(cd "$root" && find . -type f -o -type l | sed 's|^\.||' | sort)"
[[ $installed == "$expected" ]] ||
  fail "installed files differ from the expected set:$(diff <(echo "$expected") <(echo "$installed") | sed 's/^/\n    /')"
ok "nothing else installed ($(echo "$installed" | wc -l) files)"

export PATH="$root$PREFIX/bin:$PATH"
[[ "$(command -v qcfs)" == "$bin" ]] || fail "qcfs on PATH is $(command -v qcfs), not $bin"
version="$(qcfs --version)"
[[ $version == "$("$build/bin/qcfs" --version)" ]] || fail "installed binary says '$version'"
ok "installed binary runs: $version"

# ---------------------------------------------------------------- systemd unit

step "systemd unit qcfs@.service"
grep -qE '@[A-Za-z_]+@' "$unit" && fail "unsubstituted @VARIABLE@ left in the unit"
expect_line() {
  grep -qxF -- "$1" "$unit" || fail "unit lacks the line: $1"
  ok "$1"
}
expect_line "ExecStart=$PREFIX/bin/qcfs mount -f \${DEVICE} %f -o \${OPTIONS}"
expect_line "ExecStop=-$PREFIX/bin/qcfs umount %f"
expect_line "EnvironmentFile=/etc/qcfs/%i.conf"
expect_line "Environment=OPTIONS=defaults"
expect_line "Type=simple"
expect_line "KillSignal=SIGTERM"
expect_line "WantedBy=multi-user.target"
grep -q '^RequiresMountsFor=%f' "$unit" || fail "unit lacks RequiresMountsFor=%f"
ok "RequiresMountsFor=%f ..."
grep -q '^DEVICE=' "$example" || fail "the example configuration sets no DEVICE"
ok "example configuration sets DEVICE"
if have systemd-analyze; then
  # verify wants the binary where ExecStart says: point it at the DESTDIR one.
  mkdir "$tmp/units"
  sed "s|$PREFIX/bin/qcfs|$bin|g" "$unit" >"$tmp/units/qcfs@.service"
  out="$(cd "$tmp/units" && timeout 60 systemd-analyze verify --man=no "$tmp/units/qcfs@mnt-data.service" 2>&1)" ||
    fail "systemd-analyze verify: $out"
  [[ -z $out ]] || fail "systemd-analyze verify complains: $out"
  ok "systemd-analyze verify qcfs@mnt-data.service: clean"
else
  skip "systemd-analyze verify (no systemd-analyze)"
fi

# ---------------------------------------------------------------- man page

step "man page ${man#"$root"}"
render="$tmp/qcfs.8.txt"
if have man; then
  MANWIDTH=200 LC_ALL=C.UTF-8 man --warnings -l "$man" >"$render" 2>"$tmp/man.err" || fail "man -l failed: $(cat "$tmp/man.err")"
  [[ ! -s $tmp/man.err ]] || fail "man -l warns: $(cat "$tmp/man.err")"
  ok "man -l renders it without warnings"
elif have groff; then
  zcat -f "$man" | groff -man -Tutf8 -rLL=200n -ww 2>"$tmp/man.err" >"$render" || fail "groff failed: $(cat "$tmp/man.err")"
  [[ ! -s $tmp/man.err ]] || fail "groff warns: $(cat "$tmp/man.err")"
  ok "groff -man -Tutf8 renders it without warnings"
else
  zcat -f "$man" | sed 's/\\-/-/g; s/\\f[BIRP]//g' >"$render"
  skip "rendering (neither man nor groff): checking the source text"
fi
# Plain text: no overstrike, hyphens and minus signs as "-".
sed -i 's/.\x08//g; s/\xe2\x80\x90/-/g; s/\xe2\x88\x92/-/g' "$render"

for section in NAME SYNOPSIS DESCRIPTION COMMANDS "MOUNT OPTIONS" FSTAB UNMOUNTING SNAPSHOTS "EXIT STATUS" FILES "SEE ALSO"; do
  if have man || have groff; then
    grep -qx "$section" "$render" || fail "no $section section"
  else
    grep -q "$section" "$render" || fail "no $section section"
  fi
done
ok "sections NAME ... SEE ALSO"
for text in "/dev/sdb1 /mnt/data fuse.qcfs defaults,noatime 0 0" "/srv/vol.img /mnt/data fuse.qcfs defaults 0 0"; do
  grep -qF -- "$text" <<<"$(tr -s ' ' <"$render")" || fail "no fstab example '$text'"
done
ok "fstab examples"
for text in /run/qcfs /sbin/umount.fuse.qcfs "mount(8)" "umount(8)" "fstab(5)" "fstrim(8)" "fusermount3(1)" "qcfs@.service" /etc/qcfs; do
  grep -qF -- "$text" "$render" || fail "man page does not mention $text"
done
ok "FILES and SEE ALSO entries"
# The metadata lives on the device: no metadata directory any more.
stale="$(grep -nE -- '--meta( |]|$)|meta=|[.]meta\b|/var/lib/qcfs' "$render" || true)"
[[ -z $stale ]] || fail "man page still describes a metadata directory: $(tr '\n' ' ' <<<"$stale")"
ok "no --meta, meta=, IMAGE.meta or /var/lib/qcfs"
for text in FITRIM BLKDISCARD "losetup -c"; do
  grep -qF -- "$text" "$render" || fail "man page does not mention $text"
done
ok "trim (FITRIM, BLKDISCARD) and resize (losetup -c) explained"

# The page and the CLI's --help agree, both ways: every option of every
# subcommand, every mount option; nothing the CLI does not have.
cli_options() { # SUB ("" for qcfs itself): "-f", "--force", ... from --help
  qcfs ${1:+"$1"} --help | awk '/^Options:/ { on = 1; next } on && /^$/ { exit }
    on && /^  -/ { n = split($1, a, ","); for (i = 1; i <= n; i++) print a[i] }' | sort -u
}
cli_mount_options() { # "ro", "compression=", ... from the footer of qcfs mount --help
  qcfs mount --help | awk '/^Mount options/ { on = 1; next }
    on && /^  [^ ]/ { s = substr($0, 3); sub(/(  |: ).*/, "", s); n = split(s, a, /, */);
                      for (i = 1; i <= n; i++) { w = a[i]; sub(/=.*/, "=", w); if (w != "") print w } }' | sort -u
}
# "SUB OPTION" for each option the page gives SUB: tags under "qcfs SUB"
# in COMMANDS, bracketed options in SYNOPSIS ("-" is qcfs itself);
# "mount-option WORD" for each tag of MOUNT OPTIONS.
man_options() {
  awk '
    /^[A-Z]/ { section = $0; next }
    section == "SYNOPSIS" && /^       qcfs / {
      sub_ = $2
      if (sub_ ~ /^\[/) sub_ = "-"
      else if (sub_ !~ /^(mkfs|mount|umount|info|check|snapshot|trim|resize|benchmark)$/) sub_ = "mount"
    }
    section == "SYNOPSIS" && /^       / {
      s = $0
      while (match(s, /[[|]--?[a-z][a-z-]*/)) {
        print sub_, substr(s, RSTART + 1, RLENGTH - 1); s = substr(s, RSTART + RLENGTH)
      }
    }
    section == "COMMANDS" && /^   qcfs / { sub_ = $2; next }
    section == "COMMANDS" && /^       -/ {
      s = substr($0, 8)
      while (match(s, /^--?[a-z][a-z-]*/)) {
        print sub_, substr(s, 1, RLENGTH); s = substr(s, RLENGTH + 1)
        if (substr(s, 1, 2) != ", ") break
        s = substr(s, 3)
      }
    }
    section == "MOUNT OPTIONS" && /^       [a-z_]/ {
      n = split(substr($0, 8), parts, /, /)
      for (i = 1; i <= n; i++) { split(parts[i], w, " "); t = w[1]; sub(/=.*/, "=", t); print "mount-option", t }
    }' "$render" | sort -u
}
if ! have man && ! have groff; then
  skip "the page against --help (needs man or groff to render it)"
else
  documented="$(man_options)"
  for sub in "" mkfs mount umount info check snapshot trim resize benchmark; do
    cli="$(cli_options "$sub")"
    [[ -n $cli ]] || fail "no options parsed from qcfs $sub --help"
    key="${sub:--}"
    page="$(awk -v s="$key" '$1 == s { print $2 }' <<<"$documented" | sort -u)"
    for o in $cli; do
      [[ $o == -h || $o == --help ]] && [[ -n $sub ]] && continue
      grep -qxF -- "$o" <<<"$page" || fail "qcfs $sub option $o (--help) is not documented in the man page"
    done
    for o in $page; do
      grep -qxF -- "$o" <<<"$cli" || fail "the man page documents qcfs $sub $o, which qcfs $sub --help does not list"
    done
    ok "qcfs ${sub:-(global)}: $(tr '\n' ' ' <<<"$cli")"
  done
  for action in create list diff restore delete; do
    grep -qE "^       $action " "$render" || fail "snapshot action $action is not documented"
  done
  ok "snapshot actions create list diff restore delete"
  cli="$(cli_mount_options)"
  page="$(awk '$1 == "mount-option" { print $2 }' <<<"$documented")"
  [[ $(wc -l <<<"$cli") -ge 20 ]] || fail "too few mount options parsed from qcfs mount --help: $cli"
  for w in $cli; do
    grep -qxF -- "$w" <<<"$page" || fail "mount option $w (qcfs mount --help) is not in MOUNT OPTIONS"
  done
  for w in $page; do
    grep -qxF -- "$w" <<<"$cli" || fail "MOUNT OPTIONS documents $w, which qcfs mount --help does not list"
  done
  ok "mount options: $(tr '\n' ' ' <<<"$cli")"
fi

# ---------------------------------------------------------------- bash completion

step "bash completion ${completion#"$root"}"
spec="$(bash -c 'source "$1" && complete -p qcfs' _ "$completion")" || fail "sourcing the completion failed"
[[ $spec == "complete -F _qcfs qcfs" ]] || fail "complete -p qcfs: $spec"
ok "$spec"
complete_line() {
  bash -c 'source "$1"; COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=($2); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _qcfs qcfs; echo "${COMPREPLY[*]}"' \
    _ "$completion" "$1"
}
expect_completion() {
  local got
  got="$(complete_line "$1")"
  [[ " $got " == *" $2 "* ]] || fail "completing '$1' gives '$got', without '$2'"
  ok "'$1' -> ... $2 ..."
}
expect_completion "qcfs " mkfs
expect_completion "qcfs " snapshot
expect_completion "qcfs snapshot " restore
expect_completion "qcfs mkfs img --compression zs" zstd
expect_completion "qcfs mount img /mnt -o rw,noat" rw,noatime
expect_completion "qcfs check img --re" --repair
expect_completion "qcfs umount --l" --lazy
expect_completion "qcfs tr" trim
expect_completion "qcfs res" resize
expect_completion "qcfs trim /mnt --j" --json
expect_completion "qcfs resize img --si" --size
expect_completion "qcfs resize img --size +1" +10G
expect_completion "qcfs bench" benchmark
expect_completion "qcfs benchmark /mnt --jobs seqwrite,randr" seqwrite,randread-direct
for sub in mkfs mount umount info check snapshot trim resize benchmark; do
  offered="$(complete_line "qcfs $sub -" | tr ' ' '\n' | sort -u)"
  [[ $offered == "$(cli_options "$sub")" ]] || fail "'qcfs $sub -' offers $(tr '\n' ' ' <<<"$offered")"
done
ok "each subcommand's options, as its --help lists them"

# ---------------------------------------------------------------- the .deb

step "Debian package (cpack -G DEB)"
if have cpack && have dpkg-deb && have dpkg-shlibdeps; then
  cpack -G DEB -B "$tmp/pkg" --config "$build/CPackConfig.cmake" >"$tmp/cpack.log" 2>&1 ||
    { cat "$tmp/cpack.log"; fail "cpack failed"; }
  debs=("$tmp"/pkg/*.deb)
  [[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || fail "cpack made ${#debs[@]} packages: ${debs[*]}"
  deb="${debs[0]}"
  ok "built $(basename "$deb")"
  field() { dpkg-deb -f "$deb" "$1"; }
  [[ $(field Package) == qcfs ]] || fail "Package: $(field Package)"
  [[ $(field Version) == "${version#qcfs }"* ]] || fail "Version $(field Version) is not ${version#qcfs }"
  [[ $(field Section) == admin ]] || fail "Section: $(field Section)"
  [[ $(field Maintainer) == "QCFS maintainers <qcfs@example.org>" ]] || fail "Maintainer: $(field Maintainer)"
  ok "Package qcfs, Version $(field Version), Section admin, Maintainer $(field Maintainer)"
  depends="$(field Depends)"
  printf '  Depends: %s\n' "$depends"
  [[ ", $depends," =~ ,\ fuse3[\ ,] ]] || fail "Depends lacks fuse3"
  for lib in libfuse3 librocksdb libc6; do
    [[ $depends == *"$lib"* ]] || fail "Depends lacks $lib (dpkg-shlibdeps)"
  done
  ok "Depends: fuse3, libfuse3, librocksdb, libc6"
  files="$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sort)"
  grep -qx './usr/bin/qcfs' <<<"$files" || fail "no ./usr/bin/qcfs in the package"
  # Under /usr what DESTDIR had under $PREFIX; an absolute directory as is.
  expected_deb="$(echo "$expected" | sed "s|^$PREFIX/|./usr/|; t; s|^/|./|" | sort)"
  [[ $files == "$expected_deb" ]] ||
    fail "package files differ:$(diff <(echo "$expected_deb") <(echo "$files") | sed 's/^/\n    /')"
  ok "files: $(tr '\n' ' ' <<<"$files")"
  unit_in_deb="$(grep 'qcfs@.service$' <<<"$files")"
  packaged_unit="$(dpkg-deb --fsys-tarfile "$deb" | tar -xO "$unit_in_deb")"
  # shellcheck disable=SC2016 # the unit's own ${DEVICE}, not ours
  grep -qxF 'ExecStart=/usr/bin/qcfs mount -f ${DEVICE} %f -o ${OPTIONS}' <<<"$packaged_unit" ||
    fail "the packaged unit does not run /usr/bin/qcfs"
  ok "the packaged unit runs /usr/bin/qcfs"
  helper_in_deb="$(grep '/umount[.]fuse[.]qcfs$' <<<"$files")"
  helper_line="$(dpkg-deb -c "$deb" | awk -v p="$helper_in_deb" '$6 == p')"
  [[ $helper_line == l* ]] || fail "$helper_in_deb is not a link in the package: $helper_line"
  helper_target="$(awk '{ print $8 }' <<<"$helper_line")"
  [[ $helper_target != /* && "$(realpath -ms "$(dirname "${helper_in_deb#.}")/$helper_target")" == /usr/bin/qcfs ]] ||
    fail "the packaged $helper_in_deb -> $helper_target does not lead to /usr/bin/qcfs"
  ok "the packaged ${helper_in_deb#.} -> $helper_target (/usr/bin/qcfs)"
  dpkg-deb -I "$deb" postinst >/dev/null || fail "no postinst"
  ok "postinst present"
else
  skip "cpack, dpkg-deb or dpkg-shlibdeps (dpkg-dev) missing"
fi

# ---------------------------------------------------------------- mount(8)

step "mount -t fuse.qcfs, fstab and umount, through mount.fuse3 and umount.fuse.qcfs"
why=""
[[ $(id -u) -eq 0 ]] || why="not root"
[[ -z $why && ! -c /dev/fuse ]] && why="no /dev/fuse"
for t in mount.fuse3 fusermount3 findmnt mount umount; do
  [[ -z $why ]] && ! have "$t" && why="no $t"
done
# mount.fuse3 must find our binary first on its PATH: /usr/local/sbin comes
# before /usr/local/bin, so neither may hold a qcfs already.
if [[ -z $why ]]; then
  for d in /usr/local/sbin /usr/local/bin; do
    [[ -e $d/qcfs || -L $d/qcfs ]] && why="$d/qcfs exists (a real install): not replacing it"
  done
  [[ -d /usr/local/bin ]] || why="no /usr/local/bin"
fi
if [[ -n $why ]]; then
  skip "real mounts: $why"
  exit 0
fi

# losetup, mount.fuse3 and the like live in sbin.
export PATH="$PATH:/usr/sbin:/sbin"
readonly MiB=$((1024 * 1024))

# The daemon's pid, from the mount record it keeps in the runtime dir.
daemon_pid() {
  local f
  for f in "${QCFS_RUNTIME_DIR:-/run/qcfs}"/*.json; do
    [[ -f $f ]] || continue
    if grep -qF "\"mountpoint\":\"$1\"" "$f"; then
      sed -nE 's/.*"pid": *([0-9]+).*/\1/p' "$f"
      return 0
    fi
  done
}
wait_exit() {
  for _ in $(seq 600); do
    alive "$1" || return 0
    sleep 0.1
  done
  fail "daemon $1 still running 60 s after the unmount"
}
# expect_mounted [SOURCE]: $mnt is a fuse.qcfs mount of SOURCE (default
# $img), with noatime.
expect_mounted() {
  local want="${1:-$img}" fstype source options
  read -r fstype source options < <(findmnt -n -o FSTYPE,SOURCE,OPTIONS --mountpoint "$mnt") ||
    fail "$mnt is not mounted"
  [[ $fstype == fuse.qcfs && $source == "$want" ]] || fail "findmnt: '$fstype $source', expected 'fuse.qcfs $want'"
  [[ ,$options, == *,noatime,* ]] || fail "options $options lack noatime"
  ok "findmnt: $fstype $source ($options)"
}
write_content() {
  echo "$hello" >"$mnt/hello.txt"
  cp "$tmp/random.bin" "$mnt/random.bin"
  ok "wrote hello.txt and random.bin"
}
expect_content() {
  [[ "$(cat "$mnt/hello.txt")" == "$hello" ]] || fail "hello.txt reads '$(cat "$mnt/hello.txt")'"
  (cd "$mnt" && sha256sum -c --quiet "$tmp/random.sha256") || fail "random.bin differs"
  ok "hello.txt and random.bin read back"
}
# A mount through mount(8) ("mount -t fuse.qcfs ..." or "mount -T FSTAB
# MOUNTPOINT"): the daemon's pid in $daemon.
mount_volume() {
  mount "$@" || fail "mount $*"
  daemon="$(daemon_pid "$mnt")"
  [[ -n $daemon ]] || fail "no mount record for $mnt"
  ok "mount $* (daemon $daemon)"
}
# umount(8), as typed by hand: through our helper it returns once the daemon
# has flushed everything and closed the volume, so no waiting here.
plain_umount() {
  umount "$mnt" || fail "umount $mnt"
  findmnt --mountpoint "$mnt" >/dev/null && fail "$mnt still mounted after umount"
  if ((own_helper)); then
    alive "$daemon" &&
      fail "umount $mnt returned while its daemon $daemon still runs (did umount(8) run /sbin/umount.fuse.qcfs?)"
    ok "umount $mnt returned with its daemon $daemon gone"
  else
    wait_exit "$daemon"
    ok "umount $mnt; daemon $daemon exited"
  fi
  daemon=""
}
check_clean() {
  qcfs check "$1" >"$tmp/check.log" || { cat "$tmp/check.log"; fail "qcfs check $1"; }
  ok "qcfs check $1: $(tail -1 "$tmp/check.log")"
}
df_bytes() {
  df -B1 --output=size "$mnt" | tail -1 | tr -d ' '
}

link=/usr/local/bin/qcfs
ln -s "$bin" "$link"
[[ "$(PATH=$FUSE_HELPER_PATH command -v qcfs)" == "$link" ]] || fail "mount.fuse3's PATH finds $(PATH=$FUSE_HELPER_PATH command -v qcfs)"
ok "temporary link $link -> DESTDIR binary"

# umount(8) runs /sbin/umount.fuse.qcfs (on Debian /sbin is /usr/sbin) for a
# fuse.qcfs mount.
own_helper=0
if [[ -e /sbin/umount.fuse.qcfs || -L /sbin/umount.fuse.qcfs ]]; then
  skip "umount through our helper: /sbin/umount.fuse.qcfs exists (a real install): not replacing it"
else
  helper_link=/sbin/umount.fuse.qcfs
  ln -s "$bin" "$helper_link"
  own_helper=1
  ok "temporary link $helper_link -> DESTDIR binary"
fi

img="$tmp/vol.img"
mnt="$tmp/mnt"
mkdir "$mnt"
qcfs mkfs "$img" --size 256M >/dev/null || fail "qcfs mkfs $img --size 256M"
ok "qcfs mkfs $img --size 256M"
hello="written through mount(8)"
head -c 3M /dev/urandom >"$tmp/random.bin"
(cd "$tmp" && sha256sum random.bin) >"$tmp/random.sha256"

mount_volume -t fuse.qcfs "$img" "$mnt" -o noatime
expect_mounted
write_content
# Everything is on the device once umount returns: the volume checks clean.
plain_umount
check_clean "$img"

printf '%s %s fuse.qcfs defaults,noatime 0 0\n' "$img" "$mnt" >"$tmp/fstab"
mount_volume -T "$tmp/fstab" "$mnt"
ok "fstab: $(cat "$tmp/fstab")"
expect_mounted
expect_content
qcfs umount "$mnt" || fail "qcfs umount $mnt"
[[ -z $daemon ]] || ! alive "$daemon" || fail "daemon $daemon still running after qcfs umount"
findmnt --mountpoint "$mnt" >/dev/null && fail "$mnt still mounted after qcfs umount"
daemon=""
ok "qcfs umount"

step "umount of a mount whose daemon was killed"
mount_volume -t fuse.qcfs "$img" "$mnt" -o noatime
synced="made durable by fsync before SIGKILL"
echo "$synced" | dd of="$mnt/synced.txt" conv=fsync status=none || fail "writing synced.txt"
kill -KILL "$daemon"
for _ in $(seq 100); do alive "$daemon" || break; sleep 0.1; done
alive "$daemon" && fail "daemon $daemon survived SIGKILL"
stat "$mnt" >/dev/null 2>&1 && fail "$mnt still answers after its daemon died"
findmnt --mountpoint "$mnt" >/dev/null || fail "$mnt is no longer listed as mounted"
ok "kill -KILL $daemon: $mnt is a dead mount"
umount "$mnt" || fail "umount $mnt (its daemon is dead)"
findmnt --mountpoint "$mnt" >/dev/null && fail "$mnt still mounted after umount"
daemon=""
ok "umount $mnt: the dead mount is gone"

# The unit's command lines, as systemd would run them (no systemd needed):
# the foreground daemon as the main process, the readiness wait, the stop.
step "qcfs@.service command lines"
unit_command() {
  local line
  line="$(sed -n "s/^$1=-\{0,1\}//p" "$unit")"
  line="${line//%f/$mnt}"
  line="${line//\$\{DEVICE\}/$img}"
  line="${line//\$\{OPTIONS\}/$2}"
  printf '%s' "${line//\$\$/\$}"
}
start="$(unit_command ExecStart noatime)"
eval "$start" >"$tmp/unit.log" 2>&1 &
daemon=$!
eval "timeout 60 $(unit_command ExecStartPost noatime)" || fail "ExecStartPost: $mnt never became a mount ($(cat "$tmp/unit.log"))"
ok "ExecStart ($start) mounts; ExecStartPost returns once mounted"
expect_mounted
expect_content
# The mount after the SIGKILL recovered what had been fsync'd.
[[ "$(cat "$mnt/synced.txt")" == "$synced" ]] || fail "synced.txt reads '$(cat "$mnt/synced.txt")' after recovery"
ok "synced.txt (fsync'd before the SIGKILL) reads back"
eval "$(unit_command ExecStop noatime)" || fail "ExecStop failed"
wait "$daemon" || fail "the foreground daemon exited with $?: $(cat "$tmp/unit.log")"
daemon=""
findmnt --mountpoint "$mnt" >/dev/null && fail "$mnt still mounted after ExecStop"
ok "ExecStop unmounts; the main process exits 0"
check_clean "$img"

# The metadata lives on the device: the image file is the whole volume.
step "an image file moved to another directory"
mkdir "$tmp/moved"
mv "$img" "$tmp/moved/"
img="$tmp/moved/vol.img"
ok "mv vol.img to $tmp/moved/"
mount_volume -t fuse.qcfs "$img" "$mnt" -o noatime
expect_mounted
expect_content
plain_umount
check_clean "$img"

# A block device in fstab, mounted, remounted as after a reboot, and grown
# while mounted once its device grew.
step "a loop device from fstab; qcfs resize"
loop_device() {
  if ! have losetup; then
    skip "loop device: no losetup"
    return 0
  fi
  truncate -s 256M "$tmp/loop.img"
  if ! loopdev="$(losetup -f --show "$tmp/loop.img" 2>"$tmp/losetup.err")"; then
    loopdev=""
    skip "loop device: losetup -f --show failed: $(cat "$tmp/losetup.err")"
    return 0
  fi
  ok "losetup: $loopdev on a sparse 256M file"
  qcfs mkfs "$loopdev" >/dev/null || fail "qcfs mkfs $loopdev"
  ok "qcfs mkfs $loopdev"

  printf '%s %s fuse.qcfs defaults,noatime 0 0\n' "$loopdev" "$mnt" >"$tmp/fstab"
  mount_volume -T "$tmp/fstab" "$mnt"
  ok "fstab: $(cat "$tmp/fstab")"
  expect_mounted "$loopdev"
  local size
  size="$(df_bytes)"
  ((size > 240 * MiB && size <= 256 * MiB)) || fail "df: $mnt has $size bytes, expected 240..256 MiB"
  ok "df: $((size / MiB)) MiB"
  write_content
  plain_umount

  mount_volume -T "$tmp/fstab" "$mnt"
  expect_mounted "$loopdev"
  expect_content

  truncate -s 512M "$tmp/loop.img"
  losetup -c "$loopdev" || fail "losetup -c $loopdev"
  ok "the file beneath grew to 512M; losetup -c $loopdev"
  qcfs resize "$loopdev" >"$tmp/resize.log" || { cat "$tmp/resize.log"; fail "qcfs resize $loopdev"; }
  ok "qcfs resize $loopdev: $(cat "$tmp/resize.log")"
  size="$(df_bytes)"
  ((size > 496 * MiB && size <= 512 * MiB)) || fail "df after qcfs resize: $mnt has $size bytes, expected 496..512 MiB"
  ok "df: $((size / MiB)) MiB"
  expect_content
  plain_umount
  check_clean "$loopdev"
  losetup -d "$loopdev" || fail "losetup -d $loopdev"
  ok "losetup -d $loopdev"
  loopdev=""
}
loop_device

step "temporary links removed"
for l in "$link" "$helper_link"; do
  [[ -n $l ]] || continue
  rm -f "$l"
  ok "removed $l"
done
link=""
helper_link=""
