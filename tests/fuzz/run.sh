#!/usr/bin/env bash
# Runs every fuzz target of a build for a while and says what it found.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET [TARGET...]
#
# BUILD_DIR is a build configured with -DQCFS_FUZZ=ON (see CMakeLists.txt
# here); its targets are BUILD_DIR/bin/*_fuzzer. Each target first replays
# the inputs that once crashed it (regressions/TARGET/), then fuzzes from its
# seeds (corpus/TARGET/, never written to; TARGET.dict lists its tokens, if
# any) and from what earlier runs found (BUILD_DIR/fuzz/corpus/TARGET/).
# What makes a target crash, hang, leak or exceed the memory limit is saved as
#
#   BUILD_DIR/fuzz/crashes/TARGET/{crash,timeout,leak,oom}-SHA1
#
# and its report is in BUILD_DIR/fuzz/logs/TARGET.log. Replay one with
# `BUILD_DIR/bin/TARGET_fuzzer FILE`. Exit status: 0 when nothing was found,
# 1 when some target crashed, 2 on a usage error.
#
# FUZZ_KEEP_GOING=1 keeps fuzzing after a crash (libFuzzer's fork mode), to
# collect several distinct findings in one run.
set -uo pipefail

if [ $# -lt 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 BUILD_DIR SECONDS_PER_TARGET [TARGET...]" >&2
  exit 2
fi
build="$(cd "$1" && pwd)" || exit 2
seconds="$2"
shift 2
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$build/fuzz"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for bin in "$build"/bin/*_fuzzer; do
    [ -x "$bin" ] && targets+=("$(basename "$bin" _fuzzer)")
  done
fi
if [ ${#targets[@]} -eq 0 ]; then
  echo "no fuzz targets in $build/bin: configure with -DQCFS_FUZZ=ON and build the 'fuzzers' target" >&2
  exit 2
fi

# Longest input tried, per target (libFuzzer would otherwise stop at the
# largest seed); seconds one input may take before it counts as a hang.
max_len() {
  case "$1" in
    superblock) echo 8192 ;;
    metafs) echo 32768 ;;
    record | chunk_read) echo 16384 ;;
    control) echo 4096 ;;
    *) echo 1024 ;;
  esac
}
timeout_for() {
  case "$1" in
    control) echo 30 ;;
    *) echo 10 ;;
  esac
}

# ASan: report leaks (less RocksDB's, tests/fuzz/lsan.supp); UBSan: a stack with every report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$here/lsan.supp}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

total_execs=0
failed=()
printf '%-15s %14s  %s\n' target executions result
for t in "${targets[@]}"; do
  bin="$build/bin/${t}_fuzzer"
  if [ ! -x "$bin" ]; then
    printf '%-15s %14s  %s\n' "$t" - "missing: $bin"
    failed+=("$t")
    continue
  fi
  seeds="$here/corpus/$t"
  corpus="$work/corpus/$t"
  crashes="$work/crashes/$t"
  log="$work/logs/$t.log"
  mkdir -p "$corpus" "$crashes" "$work/logs"
  stamp="$work/logs/$t.started"
  : >"$log"
  touch "$stamp"
  result=ok

  # Inputs that crashed it before must not crash it now.
  regressions=()
  if [ -d "$here/regressions/$t" ]; then
    while IFS= read -r -d '' f; do regressions+=("$f"); done < <(find "$here/regressions/$t" -type f -print0 | sort -z)
  fi
  for f in "${regressions[@]}"; do
    echo "== regression $f" >>"$log"
    if ! "$bin" -timeout="$(timeout_for "$t")" -rss_limit_mb=2048 "$f" >>"$log" 2>&1; then
      result="regression crashes: $f"
      break
    fi
  done

  args=(-max_total_time="$seconds" -rss_limit_mb=2048 -timeout="$(timeout_for "$t")" -max_len="$(max_len "$t")"
        -print_final_stats=1 -artifact_prefix="$crashes/")
  if [ -f "$here/$t.dict" ]; then args+=(-dict="$here/$t.dict"); fi
  if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
    args+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  fi
  echo "== fuzzing for ${seconds}s" >>"$log"
  (cd "$work" && "$bin" "${args[@]}" "$corpus" "$seeds") >>"$log" 2>&1
  rc=$?

  # Executions: the final statistics, or the last progress line (fork mode,
  # or a run cut short by a crash).
  execs=$(grep -a '^stat::number_of_executed_units:' "$log" | tail -1 | awk '{print $2}')
  if [ -z "$execs" ]; then
    execs=$(grep -aoE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  fi
  execs=${execs:-0}
  total_execs=$((total_execs + execs))

  new=$(find "$crashes" -type f -newer "$stamp" | sort)
  if [ -n "$new" ]; then
    count=$(echo "$new" | wc -l)
    if [ "$count" -eq 1 ]; then
      result="CRASH: $new (report: $log)"
    else
      result="CRASH: $count inputs in $crashes/, first $(echo "$new" | head -1 | xargs basename) (reports: $log)"
    fi
  elif [ $rc -ne 0 ] && [ "${FUZZ_KEEP_GOING:-0}" != 1 ]; then
    result="CRASH: exit status $rc (report: $log)"
  fi
  if [ "$result" != ok ]; then failed+=("$t"); fi
  printf '%-15s %14s  %s\n' "$t" "$execs" "$result"
done

printf '%-15s %14s  %s\n' total "$total_execs" \
  "$([ ${#failed[@]} -eq 0 ] && echo "nothing found" || echo "crashed: ${failed[*]}")"
[ ${#failed[@]} -eq 0 ]
