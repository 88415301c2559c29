#include "qcfs/store/codec.h"

#include <gtest/gtest.h>

#include "tests/testutil/temp_dir.h"
#include "tests/testutil/volume_fixture.h"

namespace qcfs {
namespace {

using testing::Bytes;
using testing::RandomBytes;

TEST(Codec, ParsesSpecs) {
  EXPECT_EQ(CompressionSpec::Parse("lz4")->codec, Codec::kLz4);
  EXPECT_EQ(CompressionSpec::Parse("zstd:7")->level, 7);
  EXPECT_EQ(CompressionSpec::Parse("zstd")->ToString(), "zstd:3");
  EXPECT_EQ(CompressionSpec::Parse("none")->codec, Codec::kNone);
  EXPECT_FALSE(CompressionSpec::Parse("zstd:99").ok());
  EXPECT_FALSE(CompressionSpec::Parse("gzip").ok());
}

TEST(Codec, RoundTripsEveryCodec) {
  std::string text = RandomBytes(65536, 1, true);
  for (const char* name : {"lz4", "zstd:1", "zstd:19", "none"}) {
    auto spec = *CompressionSpec::Parse(name);
    std::vector<std::byte> packed;
    Codec used = Compress(spec, Bytes(text), &packed);
    if (spec.codec != Codec::kNone) {
      EXPECT_EQ(used, spec.codec) << name;
      EXPECT_LT(packed.size(), text.size() / 2) << name;
    }
    std::string back(text.size(), '\0');
    ASSERT_TRUE(Decompress(used, packed, std::span<std::byte>(reinterpret_cast<std::byte*>(back.data()), back.size())).ok());
    EXPECT_EQ(back, text) << name;
  }
}

TEST(Codec, IncompressibleDataIsStoredRaw) {
  std::string noise = RandomBytes(65536, 2);
  std::vector<std::byte> packed;
  EXPECT_EQ(Compress(*CompressionSpec::Parse("zstd:3"), Bytes(noise), &packed), Codec::kNone);
  EXPECT_EQ(packed.size(), noise.size());
}

TEST(Codec, CorruptPayloadIsAnErrorNotGarbage) {
  std::string text = RandomBytes(65536, 3, true);
  std::vector<std::byte> packed;
  Codec used = Compress(*CompressionSpec::Parse("lz4"), Bytes(text), &packed);
  packed.resize(packed.size() / 2);
  std::vector<std::byte> out(text.size());
  EXPECT_EQ(Decompress(used, packed, out).code(), EIO);
}

}  // namespace
}  // namespace qcfs
