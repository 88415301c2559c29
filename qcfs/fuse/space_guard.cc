#include "qcfs/fuse/space_guard.h"

#include <algorithm>

namespace qcfs {

SpaceGuard::Change SpaceGuard::Tick(uint64_t available, uint64_t kernel_limit, uint64_t kernel_dirty) {
  Change change;
  const uint64_t before = cap_.load();
  // A new mount's kernel holds nothing dirty for it yet.
  if (!ticked_) kernel_dirty = 0;
  ticked_ = true;
  const uint64_t enter = kernel_limit + options_.tick_margin;
  const bool capped = before != 0 ? available < enter + enter / 2 : available < enter;
  const bool was_gated = gated_.load();
  const bool gated = capped && (was_gated ? available < 2 * options_.gate_below : available < options_.gate_below);
  if (capped) {
    const uint64_t want = gated ? std::min(available / 8, options_.max_gated_cap) : available / 2;
    const uint64_t cap = std::clamp(want, options_.min_cap, std::max(options_.min_cap, kernel_limit));
    // Rewritten when it moved by an eighth, not every tick.
    const bool recap = before == 0 || cap < before - before / 8 || cap > before + before / 8;
    if (recap) {
      cap_ = cap;
      change.recap = true;
    }
    // Pages dirtied under the previous cap (or the daemon's own limit) may
    // still be waiting, as many as the kernel holds dirty now at most; new
    // ones stay under the cap in force.
    held_ = std::max(recap ? cap : before, std::min(before != 0 ? before : kernel_limit, kernel_dirty));
  } else if (before != 0) {
    cap_ = 0;
    held_ = 0;
    change.uncap = true;
  }
  gated_ = gated;
  change.gated = gated && !was_gated;
  return change;
}

SpaceGuard::Verdict SpaceGuard::Admit(uint64_t available) const {
  if (!gated()) return Verdict::kAdmit;
  const uint64_t margin = options_.write_margin;
  if (available >= held_.load() + margin) return Verdict::kAdmit;
  return available >= cap() + margin ? Verdict::kWait : Verdict::kRefuse;
}

}  // namespace qcfs
