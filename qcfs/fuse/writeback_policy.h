// WritebackPolicy: how much dirty page cache the kernel may hold for a mount.
//
// With the FUSE writeback cache, writes wait in the kernel's page cache
// until it writes them back. Two workloads want opposite limits:
//
//  - a stream (a large file written in order) wants a small limit: the
//    kernel then writes back while the writer still writes, and the daemon
//    compresses and hashes at the same time instead of after the writer's
//    fsync (2 GiB written in 1 MiB blocks here: about 490 against 420 MiB/s);
//  - random overwrites want a large one: every page the kernel writes back
//    early is a read-modify-write of a whole chunk in the daemon, and many
//    are written again soon after (4 KiB random writes over 2 GiB: 38,000
//    IOPS with a quarter of the system's limit, 69,000 with all of it).
//
// The policy starts streaming (a strict share of the system's dirty limit)
// and absorbs (the system's limits, as for a kernel file system) once the
// kernel writes back small, scattered pieces in a row; it streams again
// once the system's dirty page cache has drained below the streaming
// share. It only decides; the daemon applies the mode to the mount's
// backing device info (/sys/class/bdi). Thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace qcfs {

struct WritebackPolicyOptions {
  // Share of the system's dirty limit (vm.dirty_ratio) the mount may hold
  // while streaming, in percent (the bdi's max_ratio). Default 10.
  uint32_t stream_max_ratio = 10;
  // Writes shorter than this count as scattered. Default 64 KiB: the kernel
  // merges contiguous dirty pages into one request of up to max_write.
  size_t small_write_bytes = 64 << 10;
  // Writes at least this long end a run of scattered ones. Default 512 KiB.
  size_t large_write_bytes = 512 << 10;
  // Scattered writes in a row that switch to absorbing. Default 1024.
  uint32_t small_writes_to_absorb = 1024;
  // Consecutive ticks with the system's dirty page cache under the
  // streaming share that switch back to streaming. Default 2.
  uint32_t quiet_ticks_to_stream = 2;
};

class WritebackPolicy {
 public:
  enum class Mode { kStream, kAbsorb };

  explicit WritebackPolicy(WritebackPolicyOptions options = {}) : options_(options) {}

  const WritebackPolicyOptions& options() const { return options_; }
  Mode mode() const { return mode_.load(std::memory_order_relaxed); }

  // A WRITE request of `length` bytes reached the daemon. Returns true when
  // this switched the mode (the caller then applies mode()).
  bool OnWrite(size_t length);

  // Called periodically, from one thread at a time, with the system's dirty
  // and under-writeback page cache and its background dirty threshold (both
  // in bytes). Returns true when this switched the mode.
  bool OnTick(uint64_t dirty_bytes, uint64_t background_threshold_bytes);

 private:
  const WritebackPolicyOptions options_;
  std::atomic<Mode> mode_{Mode::kStream};
  std::atomic<uint32_t> small_in_row_{0};  // scattered writes since the last large one
  uint32_t quiet_ticks_ = 0;               // ticks in a row under the streaming share; OnTick's own
};

}  // namespace qcfs
