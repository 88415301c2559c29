// Clocks of the fs layer. Internal.
#pragma once

#include <time.h>

#include <cstdint>

namespace qcfs::internal {

// Wall-clock time in nanoseconds since the epoch (file timestamps). The
// coarse clock is the one the kernel stamps files with (current_time()), as
// ext4 does: with the writeback cache the kernel compares its own stamp with
// ours before a write, and a finer clock here would make it send a SETATTR
// for the times after nearly every first write to a new file.
inline int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Monotonic time in nanoseconds (ages of buffered data).
inline int64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

inline timespec ToTimespec(int64_t ns) {
  timespec ts;
  ts.tv_sec = ns / 1000000000;
  ts.tv_nsec = ns % 1000000000;
  if (ts.tv_nsec < 0) {
    ts.tv_nsec += 1000000000;
    ts.tv_sec -= 1;
  }
  return ts;
}

inline int64_t FromTimespec(const timespec& ts) { return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec; }

}  // namespace qcfs::internal
