// SpaceGuard's decisions: when the kernel's cache must be held back, by how
// much, and when a cached write is refused.
#include "qcfs/fuse/space_guard.h"

#include <gtest/gtest.h>

namespace qcfs {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kLimit = 400 * kMiB;  // what the kernel may hold under the daemon's own limit
using Verdict = SpaceGuard::Verdict;

TEST(SpaceGuard, LeavesTheKernelAloneWhileTheVolumeHoldsMoreThanItMayCache) {
  SpaceGuard g;
  auto c = g.Tick(800 * kMiB, kLimit, 300 * kMiB);
  EXPECT_FALSE(g.capped() || g.gated());
  EXPECT_FALSE(c.recap || c.uncap || c.gated);
  EXPECT_EQ(g.Admit(0), Verdict::kAdmit);
}

TEST(SpaceGuard, CapsTheKernelAtHalfTheRoomAndGatesOnlyWhenLow) {
  SpaceGuard g;
  auto c = g.Tick(600 * kMiB, kLimit, 0);  // less than the limit and a tick's writeback
  ASSERT_TRUE(g.capped());
  EXPECT_TRUE(c.recap);
  EXPECT_EQ(g.cap(), 300 * kMiB);
  EXPECT_FALSE(g.gated());
  EXPECT_EQ(g.Admit(0), Verdict::kAdmit) << "above the gate every write goes ahead";
  c = g.Tick(400 * kMiB, kLimit, 0);
  EXPECT_TRUE(c.recap && c.gated);
  EXPECT_EQ(g.cap(), 50 * kMiB) << "an eighth once gated";
  EXPECT_EQ(g.Admit(400 * kMiB), Verdict::kAdmit);
}

TEST(SpaceGuard, AFreshMountIsGatedAtOnceWithNothingHeldYet) {
  SpaceGuard g;
  g.Tick(300 * kMiB, kLimit, 900 * kMiB);  // other mounts' dirty pages do not count at the first tick
  ASSERT_TRUE(g.gated());
  EXPECT_EQ(g.cap(), 300 * kMiB / 8);
  EXPECT_EQ(g.Admit(g.cap() + 16 * kMiB), Verdict::kAdmit);
  EXPECT_EQ(g.Admit(g.cap() + 16 * kMiB - 1), Verdict::kRefuse) << "the kernel's cap and one write must fit";
}

TEST(SpaceGuard, WaitsWhileWhatTheKernelHeldBeyondTheCapMayStillArrive) {
  SpaceGuard g;
  g.Tick(600 * kMiB, kLimit, 0);           // capped at 300 MiB
  g.Tick(400 * kMiB, kLimit, 200 * kMiB);  // gated at 50 MiB; up to 200 MiB may still be dirty
  ASSERT_TRUE(g.gated());
  EXPECT_EQ(g.Admit(200 * kMiB + 16 * kMiB), Verdict::kAdmit);
  EXPECT_EQ(g.Admit(100 * kMiB), Verdict::kWait);
  EXPECT_EQ(g.Admit(50 * kMiB + 16 * kMiB - 1), Verdict::kRefuse);
  g.Tick(100 * kMiB, kLimit, 200 * kMiB);  // a tick later only the cap before counts
  EXPECT_EQ(g.cap(), 100 * kMiB / 8);
  EXPECT_EQ(g.Admit(66 * kMiB), Verdict::kAdmit);
  // Nearly nothing left: the cap stays at its floor and writes are refused.
  g.Tick(10 * kMiB, kLimit, 0);
  g.Tick(10 * kMiB, kLimit, 0);
  EXPECT_EQ(g.cap(), 4 * kMiB);
  EXPECT_EQ(g.Admit(10 * kMiB), Verdict::kRefuse);
  EXPECT_EQ(g.Admit(20 * kMiB), Verdict::kAdmit);
}

TEST(SpaceGuard, LetsGoOnlyWithSlack) {
  SpaceGuard g;
  g.Tick(300 * kMiB, kLimit, 0);
  ASSERT_TRUE(g.capped() && g.gated());
  auto c = g.Tick(700 * kMiB, kLimit, 0);  // above where each began, below its slack
  EXPECT_TRUE(g.gated());
  EXPECT_TRUE(g.capped());
  EXPECT_FALSE(c.uncap);
  c = g.Tick(1000 * kMiB, kLimit, 0);  // over 1.5 x (400 + 256) MiB
  EXPECT_FALSE(g.capped() || g.gated());
  EXPECT_TRUE(c.uncap);
  EXPECT_EQ(g.cap(), 0u);
  EXPECT_EQ(g.Admit(0), Verdict::kAdmit);
}

}  // namespace
}  // namespace qcfs
