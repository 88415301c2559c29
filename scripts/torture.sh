#!/usr/bin/env bash
# Long torture runs of the reliability tests, for a given time budget:
#
#   scripts/torture.sh --minutes N [--only LIST]
#
# LIST is a comma-separated subset of: crash, powercut, fault, differential,
# model, fuzz, stress (default: all). The budget is shared out among them;
# each runs rounds with fresh seeds until its share is spent (a round never
# starts after it), so a longer budget means more seeds, not longer rounds.
# It builds what it needs like scripts/test.sh (build/, and build-fuzz/ for
# fuzz), keeps a log per part under build/torture/, prints a results table
# (rounds, seeds, what each part reports it ran) and exits 1 if any round
# failed, naming the seed to replay it:
#
#   QCFS_CRASH_SEED=S build/bin/crash_test             (SIGKILL, remount, verify)
#   QCFS_POWERCUT_SEED=S build/bin/powercut_test       (power cuts, reordered writes)
#   QCFS_POWERCUT_SEED=S build/bin/meta_test           (power cuts under RocksDB)
#   QCFS_FAULT_SEED=S build/bin/fault_test             (EIO, ENOSPC, bit flips)
#   QCFS_DIFF_SEED=S build/bin/differential_test       (QCFS against ext4)
#   QCFS_MODEL_SEED=S build/bin/snapshot_test          (snapshots against a model)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

minutes=""
only="crash,powercut,fault,differential,model,fuzz,stress"
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --minutes=*) minutes="${1#*=}"; shift ;;
    --only) only="$2"; shift 2 ;;
    --only=*) only="${1#*=}"; shift ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "torture.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$minutes" =~ ^[0-9]+$ ]] || [ "$minutes" -lt 1 ]; then
  echo "usage: scripts/torture.sh --minutes N [--only crash,powercut,fault,differential,model,fuzz,stress]" >&2
  exit 2
fi
IFS=, read -r -a parts <<<"$only"
for p in "${parts[@]}"; do
  case "$p" in
    crash | powercut | fault | differential | model | fuzz | stress) ;;
    *) echo "torture.sh: unknown part '$p'" >&2; exit 2 ;;
  esac
done

ensure_packages "${QCFS_BUILD_PACKAGES[@]}" "${QCFS_TEST_PACKAGES[@]}"
build="$QCFS_ROOT/build"
configure_and_build "$build" ON
logs="$build/torture"
mkdir -p "$logs"
share=$(( minutes * 60 / ${#parts[@]} ))
base_seed=$(date +%s)
failures=()
summary=()

# run_rounds PART CMD...: runs "CMD" with SEED set, again and again with
# fresh seeds, until the part's share of the time is spent.
run_rounds() {
  local part="$1"
  shift
  local deadline=$(( $(date +%s) + share )) rounds=0 seed=$base_seed log="$logs/$part.log"
  : >"$log"
  while [ "$(date +%s)" -lt "$deadline" ] || [ "$rounds" -eq 0 ]; do
    seed=$(( seed + 1 ))
    echo "== seed $seed" >>"$log"
    if ! SEED=$seed bash -c "$*" >>"$log" 2>&1; then
      failures+=("$part (seed $seed; log $log)")
      rounds=$(( rounds + 1 ))
      break
    fi
    rounds=$(( rounds + 1 ))
  done
  summary+=("$(printf '%-13s %6s rounds  %s' "$part" "$rounds" "$(tally "$part" "$log")")")
}

# What each part's own output says it did, summed over its rounds.
tally() {
  local part="$1" log="$2"
  case "$part" in
    crash) awk '/^directory tree: [0-9]+ kills/ {k += $3; p += $5} /^file workload: [0-9]+ kills/ {k += $3; f += $5}
             END {printf "%d SIGKILLs survived (%d synced paths and %d fsync\x27d files verified)", k, p, f}' "$log" ;;
    powercut) awk '/^power cuts:/ {c += $3; o += $5; f += $7} /^rocksdb power cuts:/ {c += $4; k += $6}
                END {printf "%d power cuts (%d volume operations, %d durable files and %d synced keys verified)", c, o, f, k}' "$log" ;;
    fault) awk '/^metadata flips:/ {m += $3} /faults injected/ {gsub(",", ""); i += $6}
             END {printf "%d metadata bit flips, %d write faults injected", m, i}' "$log" ;;
    differential) awk '/random ops compared/ {o += $1} END {printf "%d random operations compared with ext4", o}' "$log" ;;
    model) awk '/^\[       OK \]/ {t++} END {printf "%d random operations in %d runs checked against the snapshot model", t * 20000, t}' "$log" ;;
    fuzz) awk '$1 == "total" {e += $2} END {printf "%d fuzz executions", e}' "$log" ;;
    stress) awk '/^PASS$/ {p++} END {printf "%d passes of fio, stress-ng and dbench", p}' "$log" ;;
  esac
}

for part in "${parts[@]}"; do
  log "torture: $part for about $(( share / 60 )) min"
  case "$part" in
    crash) run_rounds crash "QCFS_CRASH_SEED=\$SEED QCFS_CRASH_ITERATIONS=40 '$build/bin/crash_test'" ;;
    powercut)
      run_rounds powercut "QCFS_POWERCUT_SEED=\$SEED QCFS_POWERCUT_ROUNDS=150 '$build/bin/powercut_test' && \
        QCFS_POWERCUT_SEED=\$SEED QCFS_POWERCUT_ROUNDS=150 '$build/bin/meta_test' --gtest_filter='*Power*'" ;;
    fault) run_rounds fault "QCFS_FAULT_SEED=\$SEED QCFS_FAULT_ROUNDS=200 '$build/bin/fault_test'" ;;
    differential) run_rounds differential "QCFS_DIFF_SEED=\$SEED QCFS_DIFF_SEEDS=1 QCFS_DIFF_OPS=3000 '$build/bin/differential_test' --gtest_filter='*RandomOps*'" ;;
    model) run_rounds model "QCFS_MODEL_SEED=\$SEED QCFS_MODEL_OPS=20000 '$build/bin/snapshot_test' --gtest_filter='*Model*'" ;;
    fuzz)
      configure_and_build "$QCFS_ROOT/build-fuzz" OFF -DQCFS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -- fuzzers
      per_target=$(( share / 7 ))
      [ "$per_target" -ge 10 ] || per_target=10
      run_rounds fuzz "'$QCFS_ROOT/tests/fuzz/run.sh' '$QCFS_ROOT/build-fuzz' $per_target" ;;
    stress) run_rounds stress "QCFS_STRESS_SECONDS=$(( share / 20 > 8 ? share / 20 : 8 )) bash '$QCFS_ROOT/tests/tools/stress_test.sh' '$build'" ;;
  esac
done

echo
echo "torture results ($minutes min budget, seeds from $((base_seed + 1))):"
printf '  %s\n' "${summary[@]}"
if [ "${#failures[@]}" -gt 0 ]; then
  echo "FAILED:"
  printf '  %s\n' "${failures[@]}"
  exit 1
fi
echo "no failures"
