#include "qcfs/fuse/writeback_policy.h"

#include <gtest/gtest.h>

namespace qcfs {
namespace {

using Mode = WritebackPolicy::Mode;
constexpr uint64_t kGiB = uint64_t{1} << 30;

WritebackPolicyOptions Small() {
  WritebackPolicyOptions o;
  o.small_writes_to_absorb = 8;
  return o;
}

TEST(WritebackPolicy, StartsStreaming) { EXPECT_EQ(WritebackPolicy().mode(), Mode::kStream); }

TEST(WritebackPolicy, ScatteredWritesInARowSwitchToAbsorbingOnce) {
  WritebackPolicy p(Small());
  for (int i = 0; i < 7; ++i) EXPECT_FALSE(p.OnWrite(4096));
  EXPECT_EQ(p.mode(), Mode::kStream);
  EXPECT_TRUE(p.OnWrite(4096));
  EXPECT_EQ(p.mode(), Mode::kAbsorb);
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(p.OnWrite(4096));  // already absorbing: no new switch
}

TEST(WritebackPolicy, ALargeWriteEndsTheRunAndMediumOnesLeaveIt) {
  WritebackPolicy p(Small());
  for (int i = 0; i < 7; ++i) p.OnWrite(4096);
  EXPECT_FALSE(p.OnWrite(1 << 20));  // a stream's piece: the run starts over
  for (int i = 0; i < 7; ++i) EXPECT_FALSE(p.OnWrite(8192));
  EXPECT_FALSE(p.OnWrite(128 << 10));  // neither small nor large
  EXPECT_EQ(p.mode(), Mode::kStream);
  EXPECT_TRUE(p.OnWrite(4096));
  EXPECT_EQ(p.mode(), Mode::kAbsorb);
}

TEST(WritebackPolicy, AbsorbingLastsWhileTheDirtyCacheIsLarge) {
  WritebackPolicy p(Small());
  for (int i = 0; i < 8; ++i) p.OnWrite(4096);
  ASSERT_EQ(p.mode(), Mode::kAbsorb);
  // Streaming share of a 2 GiB background threshold: about 205 MiB.
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(p.OnTick(kGiB, 2 * kGiB));
  EXPECT_FALSE(p.OnTick(100 << 20, 2 * kGiB));  // one quiet tick is not enough
  EXPECT_FALSE(p.OnTick(kGiB, 2 * kGiB));       // and the count starts over
  EXPECT_FALSE(p.OnTick(100 << 20, 2 * kGiB));
  EXPECT_EQ(p.mode(), Mode::kAbsorb);
  EXPECT_TRUE(p.OnTick(100 << 20, 2 * kGiB));
  EXPECT_EQ(p.mode(), Mode::kStream);
  EXPECT_FALSE(p.OnTick(0, 2 * kGiB));  // streaming: ticks change nothing
  EXPECT_EQ(p.mode(), Mode::kStream);
}

TEST(WritebackPolicy, StreamingAgainCountsANewRunFromZero) {
  WritebackPolicy p(Small());
  for (int i = 0; i < 8; ++i) p.OnWrite(4096);
  p.OnTick(0, 2 * kGiB);
  ASSERT_TRUE(p.OnTick(0, 2 * kGiB));
  for (int i = 0; i < 7; ++i) EXPECT_FALSE(p.OnWrite(4096));
  EXPECT_TRUE(p.OnWrite(4096));
}

}  // namespace
}  // namespace qcfs
