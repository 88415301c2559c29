#include "qcfs/fuse/writeback_policy.h"

namespace qcfs {

bool WritebackPolicy::OnWrite(size_t length) {
  if (length >= options_.large_write_bytes) {
    if (small_in_row_.load(std::memory_order_relaxed) != 0) small_in_row_.store(0, std::memory_order_relaxed);
    return false;
  }
  if (length >= options_.small_write_bytes || mode() == Mode::kAbsorb) return false;
  if (small_in_row_.fetch_add(1, std::memory_order_relaxed) + 1 < options_.small_writes_to_absorb) return false;
  Mode expected = Mode::kStream;
  if (!mode_.compare_exchange_strong(expected, Mode::kAbsorb)) return false;
  small_in_row_.store(0, std::memory_order_relaxed);
  return true;
}

bool WritebackPolicy::OnTick(uint64_t dirty_bytes, uint64_t background_threshold_bytes) {
  if (mode() == Mode::kStream) {
    quiet_ticks_ = 0;
    return false;
  }
  // Streaming starts writing back at about this much of the mount's dirty pages.
  const uint64_t stream_share = background_threshold_bytes / 100 * options_.stream_max_ratio;
  if (dirty_bytes >= stream_share) {
    quiet_ticks_ = 0;
    return false;
  }
  if (++quiet_ticks_ < options_.quiet_ticks_to_stream) return false;
  quiet_ticks_ = 0;
  Mode expected = Mode::kAbsorb;
  return mode_.compare_exchange_strong(expected, Mode::kStream);
}

}  // namespace qcfs
