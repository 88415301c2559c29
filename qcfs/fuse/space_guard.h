// SpaceGuard: keeps the kernel's writeback cache from accepting writes that
// a nearly full volume cannot hold.
//
// With the writeback cache, write(2) returns once the bytes are in the
// kernel's page cache; the daemon sees them only when they are written
// back, long after the writer was told they were written. A volume with
// less room than the kernel may hold dirty for it (up to the system's dirty
// threshold, several GiB) could therefore accept writes it cannot keep. So
// when the volume's available space falls below twice that threshold the
// guard turns "tight":
//   - the kernel may hold at most cap() dirty bytes for the mount (the
//     mount's bdi gets a strict limit of that many bytes), an eighth of what
//     is available;
//   - the attributes of regular files are not cached, so that the kernel
//     asks the daemon (a GETATTR with the writer's file handle) before every
//     write(2) through the cache, and that request fails with ENOSPC once
//     the room left could not hold what the kernel may still hold plus one
//     more write (Admit()). write(2) itself then returns ENOSPC.
// It turns loose again once the volume has three times the threshold free.
// Pure logic: the daemon feeds it and applies what it decides. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace qcfs {

struct SpaceGuardOptions {
  // Room kept beyond the kernel's cap for the write(2) being admitted: a
  // single write larger than this may still outrun the check and fail at
  // writeback (reported by fsync and close). Default 16 MiB.
  uint64_t write_margin = 16ull << 20;
  // The smallest cap on the kernel's dirty bytes while tight. Default 4 MiB.
  uint64_t min_cap = 4ull << 20;
};

class SpaceGuard {
 public:
  explicit SpaceGuard(SpaceGuardOptions options = {}) : options_(options) {}

  struct Change {
    bool entered = false;  // became tight: invalidate the cached attributes of files open for writing
    bool left = false;     // became loose: the dirty limit goes back to the daemon's own
    bool recap = false;    // tight, with a new cap() to apply
  };
  // Called periodically, from one thread at a time, with the volume's
  // available bytes and the system's dirty threshold (bytes).
  Change Tick(uint64_t available, uint64_t system_dirty_limit);

  bool tight() const { return tight_.load(std::memory_order_relaxed); }
  // The kernel's dirty limit for the mount while tight.
  uint64_t cap() const { return cap_.load(std::memory_order_relaxed); }
  // Whether a write through the cache may go ahead with `available` bytes
  // of room: always while loose; while tight, when that room holds what
  // the kernel may have dirty under this cap or the one before, and the
  // margin.
  bool Admit(uint64_t available) const;

 private:
  const SpaceGuardOptions options_;
  std::atomic<bool> tight_{false};
  std::atomic<uint64_t> cap_{0};
  std::atomic<uint64_t> held_{0};  // the larger of the current and the previous cap
};

}  // namespace qcfs
