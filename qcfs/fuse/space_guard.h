// SpaceGuard: keeps the kernel's writeback cache from accepting writes that
// a nearly full volume cannot hold.
//
// With the writeback cache, write(2) returns once the bytes are in the
// kernel's page cache; the daemon sees them only when they are written
// back, long after the writer was told they were written. The kernel may
// hold up to `kernel_limit` bytes dirty for the mount under the daemon's own
// dirty limit (a share of the system's dirty threshold: a tenth while
// writes stream, all of it while they are absorbed). The guard keeps that
// below what the volume can still take, in two steps:
//   - capped, once the available space is less than that limit plus what
//     one tick of writeback can take (tick_margin): the mount's bdi gets a
//     strict limit of half the available space (cap()), recomputed every
//     tick, so the kernel never holds more than fits (an eighth, at most
//     max_gated_cap, once gated);
//   - gated, once under gate_below as well: regular files' attributes are
//     not cached, so that the kernel asks the daemon (a GETATTR with the
//     writer's handle) before each write(2) through its cache, and that
//     fails with ENOSPC (Admit()) once the room left could not hold what
//     the kernel may hold dirty under the current or the previous cap and
//     one more write (write_margin). write(2) itself then returns ENOSPC.
// Each step ends with some slack (hysteresis). Pure logic: the daemon feeds
// it and applies what it decides. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

namespace qcfs {

struct SpaceGuardOptions {
  // Room kept beyond the kernel's dirty bytes for the write(2) being
  // admitted: one larger write may still outrun the check and fail at
  // writeback (reported by fsync and close). Default 16 MiB.
  uint64_t write_margin = 16ull << 20;
  // What the kernel may write back to the daemon between two ticks
  // (250 ms at about 1 GB/s). Default 256 MiB.
  uint64_t tick_margin = 256ull << 20;
  // Available space below which writes are admitted one by one. Default 512 MiB.
  uint64_t gate_below = 512ull << 20;
  // The smallest cap on the kernel's dirty bytes. Default 4 MiB.
  uint64_t min_cap = 4ull << 20;
  // The largest cap while gated: writes then reach the daemon soon, and
  // little room is kept back for them. Default 64 MiB.
  uint64_t max_gated_cap = 64ull << 20;
};

class SpaceGuard {
 public:
  explicit SpaceGuard(SpaceGuardOptions options = {}) : options_(options) {}

  struct Change {
    bool recap = false;  // capped, with a new cap() to apply to the bdi
    bool uncap = false;  // no longer capped: the daemon's own dirty limit applies again
    bool gated = false;  // became gated: invalidate the cached attributes of files open for writing
  };
  // Called periodically, from one thread at a time, with the volume's
  // available bytes, what the kernel may hold dirty for the mount under the
  // daemon's own limit, and what it holds dirty or under writeback now
  // (the system's count bounds the mount's).
  Change Tick(uint64_t available, uint64_t kernel_limit, uint64_t kernel_dirty);

  bool capped() const { return cap_.load(std::memory_order_relaxed) != 0; }
  bool gated() const { return gated_.load(std::memory_order_relaxed); }
  // The strict limit on the kernel's dirty bytes while capped; 0 otherwise.
  uint64_t cap() const { return cap_.load(std::memory_order_relaxed); }
  // Whether a write through the cache may go ahead with `available` bytes
  // of room: always unless gated; then when that room holds what the kernel
  // may have dirty (under this cap, or what it held at the last tick beyond
  // it) and the margin: kAdmit. kRefuse when even the cap in force and the
  // margin do not fit; kWait in between (what the kernel held beyond the
  // cap may be written back by the next tick: ask again then).
  enum class Verdict { kAdmit, kWait, kRefuse };
  Verdict Admit(uint64_t available) const;

 private:
  const SpaceGuardOptions options_;
  std::atomic<uint64_t> cap_{0};
  std::atomic<uint64_t> held_{0};  // what the kernel may hold dirty while capped
  std::atomic<bool> gated_{false};
  bool ticked_ = false;  // Tick's own: a mount's first tick comes before any write
};

}  // namespace qcfs
