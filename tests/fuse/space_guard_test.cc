// SpaceGuard's decisions: when the kernel's cache must be held back, by how
// much, and when a cached write is refused.
#include "qcfs/fuse/space_guard.h"

#include <gtest/gtest.h>

namespace qcfs {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kThreshold = 400 * kMiB;  // the system's dirty threshold

TEST(SpaceGuard, StaysLooseWhileTheVolumeHoldsMoreThanTheKernelMayCache) {
  SpaceGuard g;
  auto c = g.Tick(10000 * kMiB, kThreshold);
  EXPECT_FALSE(g.tight());
  EXPECT_FALSE(c.entered || c.recap || c.left);
  EXPECT_TRUE(g.Admit(0));
}

TEST(SpaceGuard, CapsTheKernelAndRefusesOnlyWhatCouldNotFit) {
  SpaceGuard g;
  auto c = g.Tick(300 * kMiB, kThreshold);
  ASSERT_TRUE(g.tight());
  EXPECT_TRUE(c.entered && c.recap);
  EXPECT_EQ(g.cap(), 300 * kMiB / 8);
  EXPECT_TRUE(g.Admit(300 * kMiB));
  EXPECT_TRUE(g.Admit(g.cap() + 16 * kMiB));
  EXPECT_FALSE(g.Admit(g.cap() + 16 * kMiB - 1)) << "the kernel's cap and one write must fit";
  // Shrinking room shrinks the cap, but what the old cap let the kernel
  // hold is still counted for a tick.
  const uint64_t old_cap = g.cap();
  c = g.Tick(100 * kMiB, kThreshold);
  EXPECT_TRUE(c.recap);
  EXPECT_LT(g.cap(), old_cap);
  EXPECT_FALSE(g.Admit(old_cap + 16 * kMiB - 1));
  g.Tick(100 * kMiB, kThreshold);
  EXPECT_TRUE(g.Admit(g.cap() + 16 * kMiB));
  // Nearly nothing left: the cap stays at its floor and writes are refused.
  g.Tick(10 * kMiB, kThreshold);
  EXPECT_EQ(g.cap(), 4 * kMiB);
  EXPECT_FALSE(g.Admit(10 * kMiB));
}

TEST(SpaceGuard, LeavesTightOnlyWithAWideMargin) {
  SpaceGuard g;
  g.Tick(700 * kMiB, kThreshold);
  ASSERT_TRUE(g.tight());
  auto c = g.Tick(900 * kMiB, kThreshold);  // above 2x, below 3x: stays
  EXPECT_TRUE(g.tight());
  EXPECT_FALSE(c.left);
  c = g.Tick(1300 * kMiB, kThreshold);
  EXPECT_FALSE(g.tight());
  EXPECT_TRUE(c.left);
  EXPECT_EQ(g.cap(), 0u);
}

}  // namespace
}  // namespace qcfs
