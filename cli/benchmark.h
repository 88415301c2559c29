// The benchmark suite of bench/: what `qcfs benchmark MOUNTPOINT` runs on a
// mounted QCFS volume, and the pieces bench/compare.sh shares with it (the
// metadata job, used through bench/metadata_bench).
//
// The suite is a list of jobs, each measured alone and started cold (the
// daemon's buffers flushed, the kernel's caches dropped when the caller may):
//
//   seqwrite, seqwrite-compressible, seqwrite-dedup, seqread,
//   randread, randread-direct, randwrite, randrw   fio jobs (bench/fio/*.fio,
//                                                  built into the binary)
//   metadata   create, stat and delete many small files in nested directories
//   treecopy   cp -a of a source tree (default /usr/include)
//
// The benchmark reports; it asserts nothing about speed. Everything it
// writes lives in a temporary directory under the mountpoint, removed at
// the end whatever happened. Not thread-safe: one run at a time per process.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "qcfs/core/status.h"

namespace qcfs {

// ---------------------------------------------------------------- metadata job

struct MetadataBenchOptions {
  // Small files created, then stat'ed, then deleted. Default 20,000.
  uint64_t files = 20000;
  // Bytes written to each file (text, different in every file). Default 1 KiB.
  uint32_t file_size = 1024;
  // Files per leaf directory; the leaves sit under parents of 10 each
  // (DIR/meta/dP/dL/fN). Default 200: 100 leaves for 20,000 files.
  uint32_t files_per_dir = 200;
  // Between create and stat: sync, then drop the kernel's page, dentry and
  // inode caches (needs root; without it the stat phase runs warm).
  bool drop_caches = true;
  // Checked between files; when it turns true the run stops, removes what
  // it made and returns ECANCELED. May be null.
  const std::atomic<bool>* cancel = nullptr;
};

struct MetadataBenchResult {
  uint64_t files = 0;
  uint32_t file_size = 0;
  uint64_t directories = 0;
  double create_s = 0;  // mkdir the tree, create and write every file
  double sync_s = 0;    // syncfs after the create phase (not in any rate)
  double stat_s = 0;    // stat every file by path
  double delete_s = 0;  // unlink every file, rmdir every directory
  bool caches_dropped = false;

  double create_per_s() const { return create_s > 0 ? static_cast<double>(files) / create_s : 0; }
  double stat_per_s() const { return stat_s > 0 ? static_cast<double>(files) / stat_s : 0; }
  double delete_per_s() const { return delete_s > 0 ? static_cast<double>(files) / delete_s : 0; }
};

// Runs the metadata job in DIR/meta (REQUIRES: DIR exists; DIR/meta does not).
// DIR/meta is gone afterwards, also on failure.
Result<MetadataBenchResult> RunMetadataBench(const std::string& dir, const MetadataBenchOptions& options);
nlohmann::json MetadataBenchJson(const MetadataBenchResult& r);

// ---------------------------------------------------------------- helpers

// sync(2), then "3" into /proc/sys/vm/drop_caches. False when that is not
// permitted (not root) or not possible.
bool DropCaches();

// The path of an executable named `name` on $PATH, if any.
std::optional<std::string> FindExecutable(std::string_view name);

// CPU time (user + system, all threads) and peak resident set (VmHWM) of a
// process, from /proc/PID/stat and /proc/PID/status.
struct ProcessUsage {
  double cpu_s = 0;
  uint64_t peak_rss_bytes = 0;
};
Result<ProcessUsage> ReadProcessUsage(pid_t pid);

// ---------------------------------------------------------------- fio

// The job files of bench/fio, by name ("seqwrite" for seqwrite.fio).
std::vector<std::string> FioJobNames();
std::optional<std::string_view> FioJobText(std::string_view name);

// The figures of one fio run (--output-format=json, one job or one
// group_reporting group), summed over the jobs of the run.
struct FioResult {
  double read_bytes_per_s = 0;
  double write_bytes_per_s = 0;
  double read_iops = 0;
  double write_iops = 0;
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
  double runtime_s = 0;  // longest of read and write, final fsync included
};
// Parses fio's JSON output; text before the first '{' (warnings) is skipped.
Result<FioResult> ParseFioJson(std::string_view text);

// ---------------------------------------------------------------- the suite

// Every job of the suite, in the order it runs.
const std::vector<std::string>& BenchmarkJobNames();
// "seqwrite,randread" -> the jobs, in suite order; unknown names are an error.
Result<std::vector<std::string>> ParseJobList(std::string_view list);

struct BenchmarkOptions {
  // A mounted QCFS volume (its mountpoint, or its device).
  std::string mountpoint;
  // Size of the sequential jobs' file. Default 2 GiB.
  uint64_t seq_size = 2ull << 30;
  // Size of each of the two files of the random jobs. Default 1 GiB.
  uint64_t rand_size = 1ull << 30;
  // Seconds each random job runs. Default 30.
  int runtime_s = 30;
  // Files of the metadata job. Default 20,000.
  uint64_t files = 20000;
  // The tree the treecopy job copies with cp -a. Default /usr/include.
  std::string tree = "/usr/include";
  // Jobs to run, in suite order (see ParseJobList); empty: all of them.
  std::vector<std::string> jobs;
  // Polled while jobs run: when true, the running job is stopped, the
  // temporary directory removed and RunBenchmark returns ECANCELED.
  const std::atomic<bool>* cancel = nullptr;
  // Called as each job starts: (index from 0, count, name).
  std::function<void(size_t, size_t, const std::string&)> progress;

  // Small sizes for a run of a few minutes: 256 MiB sequential, 2 x 128 MiB
  // random for 5 s, 2,000 files.
  static BenchmarkOptions Quick();
};

struct BenchmarkJobResult {
  std::string name;
  std::string description;
  FioResult fio;                                // fio jobs
  std::optional<MetadataBenchResult> metadata;  // metadata
  // treecopy: cp -a wall time, then the time to flush what it wrote.
  double copy_s = 0, flush_s = 0;
  uint64_t tree_files = 0, tree_bytes = 0;
  // Daemon CPU seconds (user + system) while the job ran.
  double daemon_cpu_s = 0;
  // What the job added to the volume, from `qcfs info` before and after:
  // logical (as files see it), unique (after dedup), stored (compressed).
  int64_t logical_bytes = 0, unique_bytes = 0, stored_bytes = 0;
  bool has_space = false;  // the three above are meaningful (a job that wrote new data)

  double compression_ratio() const;  // unique / stored
  double dedup_ratio() const;        // logical / unique
  uint64_t bytes_written() const;    // fio's, or the tree's size
  double cpu_s_per_gib_written() const;  // 0 when it wrote nothing
};

struct BenchmarkReport {
  std::string mountpoint, device;
  BenchmarkOptions options;  // as run (sizes, jobs)
  bool caches_dropped = false;
  std::vector<BenchmarkJobResult> jobs;
  uint64_t daemon_peak_rss_bytes = 0;  // VmHWM at the end (the daemon's whole life)
  std::vector<std::string> notes;      // what was skipped and why

  const BenchmarkJobResult* Find(std::string_view name) const;
  // Daemon CPU seconds per GiB written, over the jobs whose name starts
  // with `prefix` ("seqwrite", "rand"; "": all) and wrote.
  double cpu_s_per_gib_written(std::string_view prefix = "") const;
};

// Runs the suite. Errors: EINVAL when the target is not a mounted QCFS
// volume, ENOENT when fio is missing, ENOSPC when the volume has too little
// free space for the sizes asked, ECANCELED when cancelled; else what failed.
Result<BenchmarkReport> RunBenchmark(const BenchmarkOptions& options);

nlohmann::json BenchmarkJson(const BenchmarkReport& report);
// The headline ("Sequential: ... read, ... write; Random 4K IOPS: ...;
// Metadata: ...", the reduction achieved, the daemon's cost) and a line per job.
std::string BenchmarkSummary(const BenchmarkReport& report);

}  // namespace qcfs
