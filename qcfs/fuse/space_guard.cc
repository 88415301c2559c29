#include "qcfs/fuse/space_guard.h"

#include <algorithm>

namespace qcfs {

SpaceGuard::Change SpaceGuard::Tick(uint64_t available, uint64_t system_dirty_limit) {
  Change change;
  const bool was = tight_.load();
  const uint64_t margin = options_.write_margin;
  bool now = was;
  if (!was && available < 2 * system_dirty_limit + margin) now = true;
  if (was && available > 3 * system_dirty_limit + margin) now = false;
  const uint64_t before = cap_.load();
  if (now) {
    const uint64_t cap = std::clamp(available / 8, options_.min_cap, std::max(options_.min_cap, system_dirty_limit));
    // Pages dirtied under the previous cap may still be waiting.
    held_ = std::max(cap, was ? before : cap);
    // Recapped when it moved by an eighth: the knob is not rewritten every tick.
    if (!was || cap < before - before / 8 || cap > before + before / 8) {
      cap_ = cap;
      change.recap = true;
    }
  } else {
    cap_ = 0;
    held_ = 0;
  }
  tight_ = now;
  change.entered = now && !was;
  change.left = was && !now;
  return change;
}

bool SpaceGuard::Admit(uint64_t available) const {
  if (!tight()) return true;
  return available >= held_.load() + options_.write_margin;
}

}  // namespace qcfs
