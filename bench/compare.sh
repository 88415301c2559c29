#!/usr/bin/env bash
# Runs the suite of bench/ on three targets in one run and compares them:
#
#   ext4            a plain directory on the host's file system
#   passthrough_ll  libfuse's low-level passthrough example over that file
#                   system, -o cache=always,writeback: the fastest a FUSE
#                   file system gets here, the ceiling QCFS is held to
#   qcfs            QCFS on an image file on the same file system
#
# (--passthrough-defaults adds passthrough_ll with its default options.)
# Jobs run interleaved: every repetition runs each job on each target in
# turn (the order of the targets rotates), the kernel's caches dropped
# before each. The table gives the median of the repetitions with min-max
# and the ratio QCFS / passthrough_ll; CPU seconds per GiB written and peak
# RSS of both daemons follow. Every mount made is removed on exit, Ctrl-C
# and failure included.
#
#   bench/compare.sh [--quick] [--reps N] [--jobs LIST] [--json] [--passthrough-defaults] [--keep]
#
# Needs root (FUSE mounts, drop_caches), fio, a C compiler, pkg-config and
# libfuse3-dev (passthrough_ll.c is built from its examples), python3.
#
# Environment:
#   QCFS_BIN              the qcfs binary (default build/bin/qcfs); metadata_bench
#                         is taken from the same directory
#   QCFS_BENCH_DIR        where to work: a directory on the host's ext4 (default /var/tmp)
#   QCFS_BENCH_SIZE       sequential jobs' file (default 2g; --quick 256m)
#   QCFS_BENCH_RAND_SIZE  each of the random jobs' two files (default 1g; --quick 128m)
#   QCFS_BENCH_RUNTIME    seconds per random job (default 30; --quick 5)
#   QCFS_BENCH_FILES      files of the metadata job (default 20000; --quick 2000)
#   QCFS_BENCH_TREE       tree copied by treecopy (default /usr/include)
#   QCFS_MKFS_OPTIONS     extra qcfs mkfs options, e.g. "--compression zstd:1"
#   QCFS_MOUNT_OPTIONS    qcfs mount -o options
#   PASSTHROUGH_LL_SRC    passthrough_ll.c (default: the libfuse3-dev examples)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
qcfs="${QCFS_BIN:-$root/build/bin/qcfs}"
metabench="$(dirname "$qcfs")/metadata_bench"
all_jobs="seqwrite seqwrite-compressible seqwrite-dedup seqread randread randread-direct randwrite randrw metadata treecopy"

usage() {
  echo "usage: bench/compare.sh [--quick] [--reps N] [--jobs LIST] [--json] [--passthrough-defaults] [--keep]"
  echo "jobs: ${all_jobs// /,}"
  exit "${1:-2}"
}

quick=0 reps=3 jobs="$all_jobs" json=0 pt_defaults=0 keep=0
while (($#)); do
  case "$1" in
    --quick) quick=1 ;;
    --reps) reps="${2:?--reps needs a number}"; shift ;;
    --reps=*) reps="${1#*=}" ;;
    --jobs) jobs="${2:?--jobs needs a list}"; shift ;;
    --jobs=*) jobs="${1#*=}" ;;
    --json) json=1 ;;
    --passthrough-defaults) pt_defaults=1 ;;
    --keep) keep=1 ;;
    -h | --help) usage 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; usage ;;
  esac
  shift
done
[[ $reps =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --reps must be a positive number" >&2; exit 2; }
jobs="${jobs//,/ }"
selected=""
for j in $all_jobs; do [[ " $jobs " == *" $j "* ]] && selected+="$j "; done
for j in $jobs; do
  [[ " $all_jobs " == *" $j "* ]] || { echo "compare.sh: unknown job $j (jobs: ${all_jobs// /,})" >&2; exit 2; }
done
jobs="${selected% }"

if ((quick)); then d_size=256m d_rand=128m d_runtime=5 d_files=2000; else d_size=2g d_rand=1g d_runtime=30 d_files=20000; fi
export QCFS_BENCH_SIZE="${QCFS_BENCH_SIZE:-$d_size}"
export QCFS_BENCH_RAND_SIZE="${QCFS_BENCH_RAND_SIZE:-$d_rand}"
export QCFS_BENCH_RUNTIME="${QCFS_BENCH_RUNTIME:-$d_runtime}"
files="${QCFS_BENCH_FILES:-$d_files}"
# passthrough_ll keeps an open descriptor for every inode the kernel knows:
# every file the metadata job creates, every directory, and a few of its
# own. Where the descriptor limit is lower than that (20,000 on some
# machines, even for root), the default file count is lowered for every
# target so that the comparison stands; QCFS_BENCH_FILES overrides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fd_limit="$(ulimit -n)"
files_note=""
if [[ -z ${QCFS_BENCH_FILES:-} && $fd_limit != unlimited ]]; then
  max_files=$(((fd_limit - fd_limit / 200 - fd_limit / 2000 - 64) / 100 * 100))
  if ((files > max_files)); then
    files_note="metadata job: $max_files files instead of $files (passthrough_ll needs a descriptor per file and may open $fd_limit)"
    files=$max_files
  fi
fi
tree="${QCFS_BENCH_TREE:-/usr/include}"

log() { echo "compare.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- requirements

[[ $(id -u) -eq 0 ]] || die "needs root (FUSE mounts and dropping the kernel's caches)"
for tool in fio python3 pkg-config fusermount3 mountpoint findmnt; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install fio python3 pkg-config fuse3 util-linux)"
done
cc="${CC:-cc}"
command -v "$cc" >/dev/null || die "no C compiler ($cc): apt-get install gcc"
pkg-config --exists fuse3 || die "pkg-config does not know fuse3: apt-get install libfuse3-dev"
[[ -x $qcfs ]] || die "no qcfs binary at $qcfs: build it (cmake --build build) or set QCFS_BIN"
[[ " $jobs " != *" metadata "* || -x $metabench ]] || die "no metadata_bench beside $qcfs: build it"
pt_src="${PASSTHROUGH_LL_SRC:-}"
if [[ -z $pt_src ]]; then
  for c in /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c.gz; do
    [[ -f $c ]] && { pt_src="$c"; break; }
  done
fi
[[ -n $pt_src && -f $pt_src ]] || die "passthrough_ll.c not found (libfuse3-dev's examples); set PASSTHROUGH_LL_SRC"

bytes() { # fio-style size (2g, 512m, 4096) -> bytes
  local v="${1,,}" n m=1
  n="${v%%[kmgt]*}"
  case "$v" in *k*) m=1024 ;; *m*) m=$((1 << 20)) ;; *g*) m=$((1 << 30)) ;; *t*) m=$((1 << 40)) ;; esac
  [[ $n =~ ^[0-9]+$ ]] || die "not a size: $1"
  echo $((n * m))
}
seq_bytes="$(bytes "$QCFS_BENCH_SIZE")"
rand_bytes="$(bytes "$QCFS_BENCH_RAND_SIZE")"
data_bytes=$((seq_bytes + 2 * rand_bytes))

base="${QCFS_BENCH_DIR:-/var/tmp}"
work="$(mktemp -d "$base/qcfs-compare.XXXXXX")"
export QCFS_RUNTIME_DIR="$work/run"

# ---------------------------------------------------------------- cleanup

declare -A pt_pid=()
targets=()
cleanup() {
  local rc=$? t m
  set +e
  trap - EXIT INT TERM
  ((rc == 130 || rc == 143)) && log "interrupted: removing the mounts"
  for t in "${!pt_pid[@]}"; do
    m="$work/$t/mnt"
    if mountpoint -q "$m"; then fusermount3 -u "$m" 2>/dev/null || fusermount3 -u -z "$m"; fi
    kill "${pt_pid[$t]}" 2>/dev/null
    wait "${pt_pid[$t]}" 2>/dev/null
  done
  m="$work/qcfs/mnt"
  if mountpoint -q "$m" 2>/dev/null; then
    timeout 300 "$qcfs" umount "$m" || fusermount3 -u -z "$m"
  fi
  if ((keep)); then
    log "kept $work"
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fstype="$(findmnt -no FSTYPE -T "$work")"
[[ $fstype == ext4 ]] || log "warning: $base is on $fstype, not ext4: the plain target is $fstype"
avail=$(($(df --output=avail -B1 "$work" | tail -1)))
need=$((4 * data_bytes + (1 << 30)))
((avail >= need)) || die "needs about $((need >> 30)) GiB free in $base, has $((avail >> 30)) GiB"

# ---------------------------------------------------------------- targets

log "building passthrough_ll from $pt_src"
mkdir -p "$work/pt-build"
if [[ $pt_src == *.gz ]]; then zcat "$pt_src" >"$work/pt-build/passthrough_ll.c"; else cp "$pt_src" "$work/pt-build/"; fi
for h in "$(dirname "$pt_src")"/passthrough_helpers.h*; do
  [[ -f $h ]] || continue
  if [[ $h == *.gz ]]; then zcat "$h" >"$work/pt-build/passthrough_helpers.h"; else cp "$h" "$work/pt-build/"; fi
done
# shellcheck disable=SC2046 # pkg-config's flags are words
"$cc" -O2 -Wall -o "$work/pt-build/passthrough_ll" "$work/pt-build/passthrough_ll.c" \
  $(pkg-config fuse3 --cflags --libs) -lpthread || die "building passthrough_ll failed"
pt_bin="$work/pt-build/passthrough_ll"

# start_passthrough NAME OPTIONS: mounts $work/NAME/mnt over $work/NAME/src.
start_passthrough() {
  local t="$1" opts="$2" i
  mkdir -p "$work/$t/src" "$work/$t/mnt"
  "$pt_bin" -f -o "source=$work/$t/src${opts:+,$opts}" "$work/$t/mnt" 2>"$work/$t.log" &
  pt_pid[$t]=$!
  for ((i = 0; i < 100; i++)); do
    mountpoint -q "$work/$t/mnt" && return 0
    kill -0 "${pt_pid[$t]}" 2>/dev/null || break
    sleep 0.1
  done
  die "passthrough_ll did not mount: $(cat "$work/$t.log")"
}

mkdir -p "$work/ext4/data"
targets+=(ext4)
start_passthrough passthrough_ll "cache=always,writeback"
targets+=(passthrough_ll)
if ((pt_defaults)); then
  start_passthrough passthrough_ll-defaults ""
  targets+=(passthrough_ll-defaults)
fi
img_bytes=$((4 * data_bytes > (8 << 30) ? 4 * data_bytes : (8 << 30)))
mkdir -p "$work/qcfs/mnt"
# shellcheck disable=SC2086 # options are words
"$qcfs" mkfs "$work/qcfs/vol.img" --size "$((img_bytes >> 20))M" ${QCFS_MKFS_OPTIONS:-} >"$work/qcfs.mkfs.log" ||
  die "qcfs mkfs failed: $(cat "$work/qcfs.mkfs.log")"
"$qcfs" mount "$work/qcfs/vol.img" "$work/qcfs/mnt" ${QCFS_MOUNT_OPTIONS:+-o "$QCFS_MOUNT_OPTIONS"}
targets+=(qcfs)
qcfs_pid="$(python3 - "$QCFS_RUNTIME_DIR" "$work/qcfs/mnt" <<'PY'
import glob, json, os, sys
for f in glob.glob(os.path.join(sys.argv[1], "*.json")):
    try:
        r = json.load(open(f))
    except (OSError, ValueError):
        continue
    if os.path.realpath(r.get("mountpoint", "")) == os.path.realpath(sys.argv[2]):
        print(r["pid"])
PY
)"
[[ -n $qcfs_pid ]] || qcfs_pid="$(pgrep -o -f "qcfs.* $work/qcfs/mnt" || true)"
[[ -n $qcfs_pid ]] || die "cannot find the qcfs daemon's pid"

dir_of() { # the directory a target's jobs work in
  case "$1" in
    ext4) echo "$work/ext4/data" ;;
    *) echo "$work/$1/mnt" ;;
  esac
}
pid_of() {
  case "$1" in
    ext4) echo "" ;;
    qcfs) echo "$qcfs_pid" ;;
    *) echo "${pt_pid[$1]}" ;;
  esac
}
tck="$(getconf CLK_TCK)"
cpu_of() { # CPU seconds (user + system) of a daemon, 0 for ext4
  local pid
  pid="$(pid_of "$1")"
  [[ -n $pid ]] || { echo 0; return; }
  awk -v t="$tck" '{ sub(/^.*\) /, ""); print ($12 + $13) / t }' "/proc/$pid/stat"
}
settle() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { date +%s.%N; }

# ---------------------------------------------------------------- jobs

results="$work/results.jsonl"
: >"$results"
declare -A laid_out=()
tree_bytes=0
if [[ " $jobs " == *" treecopy "* ]]; then
  [[ -d $tree ]] || die "treecopy: $tree is not a directory (set QCFS_BENCH_TREE)"
  tree_bytes="$(du -sb --apparent-size "$tree" | cut -f1)"
fi

# record TARGET JOB REP CPU_S WRITTEN_BYTES KIND FILE: one line of results.
record() {
  python3 - "$@" >>"$results" <<'PY'
import json, sys
target, job, rep, cpu, written, kind, path = sys.argv[1:8]
text = open(path).read()
m = {}
if kind == "fio":
    r = json.loads(text[text.index("{"):])
    jj = r["jobs"]
    rd = lambda k: sum(j["read"][k] for j in jj)
    wr = lambda k: sum(j["write"][k] for j in jj)
    written = wr("io_bytes")
    if job.startswith("seq"):
        if written: m["write MiB/s"] = wr("bw_bytes") / 2**20
        else: m["read MiB/s"] = rd("bw_bytes") / 2**20
    else:
        if rd("io_bytes"): m["read IOPS"] = rd("iops")
        if written: m["write IOPS"] = wr("iops")
elif kind == "metadata":
    r = json.loads(text)
    m = {"create files/s": r["create_per_s"], "stat files/s": r["stat_per_s"], "delete files/s": r["delete_per_s"]}
    written = int(written)
else:  # treecopy: "COPY_S FLUSH_S"
    copy_s, flush_s = map(float, text.split())
    m = {"cp -a s": copy_s, "sync s": flush_s}
    written = int(written)
print(json.dumps({"target": target, "job": job, "rep": int(rep), "metrics": m,
                  "cpu_s": float(cpu), "written_bytes": int(written)}))
PY
}

# failed TARGET JOB REP MESSAGE: records a job that failed; the run goes on
# unless the target itself is gone (a daemon that died).
failed() {
  python3 -c 'import json, sys; print(json.dumps({"target": sys.argv[1], "job": sys.argv[2], "rep": int(sys.argv[3]),
                                                  "error": sys.argv[4]}))' "$@" >>"$results"
  log "rep $3/$reps $2 on $1 FAILED: $4"
  stat "$(dir_of "$1")" >/dev/null 2>&1 || die "$1 is gone (its daemon died?): stopping"
}

delta() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }

# fio catches SIGINT and exits normally (status 128), and then bash does
# not run its own INT trap: a Ctrl-C during fio is recognised here.
fio_ok() { # fio ARGS...: fio's status; exits the script when fio was interrupted
  local rc=0
  fio "$@" || rc=$?
  ((rc == 128)) && exit 130
  return "$rc"
}

run_phase() { # TARGET JOB REP
  local t="$1" job="$2" rep="$3" dir out cpu0 cpu1 t0 t1 t2 jobfile
  dir="$(dir_of "$t")"
  out="$work/out/$rep.$job.$t"
  mkdir -p "$work/out"
  export QCFS_BENCH_DIR="$dir"
  case "$job" in
    metadata)
      settle
      cpu0="$(cpu_of "$t")"
      if ! "$metabench" "$dir" --files "$files" --json >"$out.json" 2>"$out.err"; then
        failed "$t" "$job" "$rep" "$(tail -1 "$out.err")"
        return 0
      fi
      cpu1="$(cpu_of "$t")"
      record "$t" "$job" "$rep" "$(delta "$cpu0" "$cpu1")" 0 metadata "$out.json"
      ;;
    treecopy)
      settle
      find "$tree" -type f -print0 2>/dev/null | xargs -0 cat >/dev/null 2>&1 || true # the source in the page cache
      cpu0="$(cpu_of "$t")"
      t0="$(now)"
      if ! cp -a "$tree" "$dir/tree" 2>"$out.err"; then
        failed "$t" "$job" "$rep" "cp -a: $(head -1 "$out.err")"
        rm -rf "$dir/tree"
        return 0
      fi
      t1="$(now)"
      sync -f "$dir"
      t2="$(now)"
      cpu1="$(cpu_of "$t")"
      awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { print b - a, c - b }' >"$out.txt"
      record "$t" "$job" "$rep" "$(delta "$cpu0" "$cpu1")" "$tree_bytes" treecopy "$out.txt"
      rm -rf "$dir/tree"
      ;;
    *)
      jobfile="$root/bench/fio/$job.fio"
      if [[ $job == seqread || ($job == rand* && -z ${laid_out[$t]:-}) ]]; then
        if ! fio_ok --create_only=1 "$jobfile" >"$out.layout" 2>&1; then
          failed "$t" "$job" "$rep" "laying out: $(grep -m1 -i err "$out.layout" || tail -1 "$out.layout")"
          return 0
        fi
        [[ $job == rand* ]] && laid_out[$t]=1
      fi
      settle
      cpu0="$(cpu_of "$t")"
      if ! fio_ok --output-format=json --output="$out.json" "$jobfile" >/dev/null 2>"$out.err"; then
        failed "$t" "$job" "$rep" "fio: $(cat "$out.err" "$out.json" 2>/dev/null | grep -m1 -i 'err\|fio:' || echo "exit status $?")"
        [[ $job == rand* ]] || rm -f "$dir/$job.dat"
        return 0
      fi
      cpu1="$(cpu_of "$t")"
      record "$t" "$job" "$rep" "$(delta "$cpu0" "$cpu1")" 0 fio "$out.json"
      [[ $job == rand* ]] || rm -f "$dir/$job.dat"
      ;;
  esac
  log "rep $rep/$reps $job on $t: $(tail -1 "$results" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(", ".join("%s %s" % (format(v, ",.0f") if v >= 100 else format(v, ".2f"), k) for k, v in r["metrics"].items()))')"
}

[[ -z $files_note ]] || log "$files_note"
log "working in $work ($fstype); sequential $QCFS_BENCH_SIZE, random 2 x $QCFS_BENCH_RAND_SIZE for" \
  "${QCFS_BENCH_RUNTIME} s, $files files; $reps repetitions; targets ${targets[*]}"
for ((rep = 1; rep <= reps; rep++)); do
  for job in $jobs; do
    n=${#targets[@]}
    for ((i = 0; i < n; i++)); do
      run_phase "${targets[(i + rep - 1) % n]}" "$job" "$rep"
    done
  done
done

# Peak RSS of the daemons, before they go.
declare -A rss=()
for t in "${targets[@]}"; do
  pid="$(pid_of "$t")"
  [[ -n $pid ]] && rss[$t]="$(awk '/^VmHWM:/ { print $2 * 1024 }' "/proc/$pid/status")"
done
rss_json="{"
for t in "${!rss[@]}"; do rss_json+="\"$t\": ${rss[$t]},"; done
rss_json="${rss_json%,}}"

# ---------------------------------------------------------------- report

python3 - "$results" "$json" "$rss_json" "$reps" "$QCFS_BENCH_SIZE" "$QCFS_BENCH_RAND_SIZE" \
  "$QCFS_BENCH_RUNTIME" "$files" "$tree" "$fstype" "${targets[*]}" "$quick" "$files_note" <<'PY'
import json, os, statistics, sys

path, as_json, rss, reps, size, rand, runtime, files, tree, fstype, targets, quick, note = sys.argv[1:14]
rss = json.loads(rss)
targets = targets.split()
rows = [json.loads(l) for l in open(path)]
failures = [r for r in rows if "error" in r]
rows = [r for r in rows if "error" not in r]
order = []
for r in rows:
    for k in r["metrics"]:
        if (r["job"], k) not in order:
            order.append((r["job"], k))

def stats(vals):
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "values": vals}

results = []
for job, metric in order:
    entry = {"job": job, "metric": metric, "higher_is_better": not metric.endswith(" s"), "targets": {}}
    for t in targets:
        vals = [r["metrics"][metric] for r in rows if r["job"] == job and r["target"] == t and metric in r["metrics"]]
        if vals:
            entry["targets"][t] = stats(vals)
    q, p = entry["targets"].get("qcfs"), entry["targets"].get("passthrough_ll")
    entry["qcfs_over_passthrough"] = q["median"] / p["median"] if q and p and p["median"] else None
    results.append(entry)

daemons = {}
for t in targets:
    if t == "ext4":
        continue
    per_job = {}
    for job in dict.fromkeys(r["job"] for r in rows):
        vals = [r["cpu_s"] / (r["written_bytes"] / 2**30) for r in rows
                if r["job"] == job and r["target"] == t and r["written_bytes"] > 0]
        if vals:
            per_job[job] = statistics.median(vals)
    daemons[t] = {"cpu_s_per_gib_written": per_job, "peak_rss_bytes": rss.get(t)}

config = {"quick": quick == "1", "repetitions": int(reps), "seq_size": size, "rand_size_per_job": rand,
          "rand_runtime_s": int(runtime), "metadata_files": int(files), "tree": tree, "host_fs": fstype,
          "targets": targets, "kernel": os.uname().release, "cpus": os.cpu_count(), "notes": [note] if note else []}
if as_json == "1":
    print(json.dumps({"config": config, "results": results, "daemons": daemons, "failures": failures}, indent=2))
    sys.exit(0)

def fmt(v):
    return format(v, ",.0f") if v >= 100 else format(v, ".2f")

def cell(s):
    if s is None:
        return "failed"
    return "%s (%s-%s)" % (fmt(s["median"]), fmt(s["min"]), fmt(s["max"])) if len(s["values"]) > 1 else fmt(s["median"])

print("Sequential %s, random 2 x %s for %s s, %s files, tree %s; medians of %s with min-max; host file system %s"
      % (size, rand, runtime, format(int(files), ","), tree, reps, fstype))
if note:
    print("Note: " + note)
print()
header = ["job", "metric"] + targets + ["qcfs/pt"]
table = [header]
for e in results:
    ratio = e["qcfs_over_passthrough"]
    table.append([e["job"], e["metric"]] + [cell(e["targets"].get(t)) for t in targets]
                 + ["-" if ratio is None else "%.2fx" % ratio])
widths = [max(len(r[i]) for r in table) for i in range(len(header))]
for r in table:
    print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
print()
print("qcfs/pt: the QCFS median over passthrough_ll's (cache=always,writeback); for times (s) lower is better.")
for f in failures:
    print("FAILED: %s on %s (repetition %d): %s" % (f["job"], f["target"], f["rep"], f["error"]))
print()
print("Daemon CPU seconds per GiB written (median), peak RSS:")
jobs = list(dict.fromkeys(j for d in daemons.values() for j in d["cpu_s_per_gib_written"]))
for t, d in daemons.items():
    parts = ["%s %.2f" % (j, d["cpu_s_per_gib_written"][j]) for j in jobs if j in d["cpu_s_per_gib_written"]]
    peak = d["peak_rss_bytes"]
    print("  %-24s %s; peak RSS %s" % (t, ", ".join(parts) or "-",
                                       "%.0f MiB" % (peak / 2**20) if peak else "-"))
PY
