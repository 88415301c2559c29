#include "qcfs/store/superblock.h"

#include <gtest/gtest.h>

#include "qcfs/io/mem_device.h"

namespace qcfs {
namespace {

Superblock Sample() {
  Superblock sb;
  sb.uuid[0] = 0xab;
  sb.device_size = 64ull << 20;
  sb.segment_count = 15;
  sb.compression = *CompressionSpec::Parse("zstd:5");
  return sb;
}

TEST(Superblock, RoundTrips) {
  Superblock sb = Sample();
  auto back = Superblock::Decode(sb.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->uuid, sb.uuid);
  EXPECT_EQ(back->segment_count, 15u);
  EXPECT_EQ(back->compression.ToString(), "zstd:5");
}

TEST(Superblock, RejectsForeignAndDamagedBlocks) {
  std::string zeros(4096, '\0');
  EXPECT_EQ(Superblock::Decode(zeros).status().code(), EINVAL);
  std::string block = Sample().Encode();
  block[60] ^= 1;
  EXPECT_EQ(Superblock::Decode(block).status().code(), EUCLEAN);
}

TEST(Superblock, RefusesANewerFormat) {
  Superblock sb = Sample();
  sb.format_version = Superblock::kFormatVersion + 1;
  auto r = Superblock::Decode(sb.Encode());
  EXPECT_EQ(r.status().code(), EPROTONOSUPPORT);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos);
}

TEST(Superblock, FallsBackToTheSecondCopy) {
  MemDevice dev(64ull << 20);
  ASSERT_TRUE(WriteSuperblock(&dev, Sample()).ok());
  std::byte junk[16] = {};
  dev.Poke(100, junk);
  auto sb = ReadSuperblock(&dev);
  ASSERT_TRUE(sb.ok()) << sb.status().ToString();
  EXPECT_EQ(sb->segment_count, 15u);
}

}  // namespace
}  // namespace qcfs
