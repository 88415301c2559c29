#include "qcfs/core/units.h"

#include <gtest/gtest.h>

namespace qcfs {
namespace {

TEST(ParseSize, AcceptsBinaryUnits) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("64K"), 64u << 10);
  EXPECT_EQ(*ParseSize("64KiB"), 64u << 10);
  EXPECT_EQ(*ParseSize("20G"), 20ull << 30);
  EXPECT_EQ(*ParseSize("1.5M"), 3ull << 19);
  EXPECT_EQ(*ParseSize(" 2 t "), 2ull << 40);
}

TEST(ParseSize, RejectsGarbageWithAClearMessage) {
  auto r = ParseSize("lots");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_NE(r.status().message().find("lots"), std::string::npos);
  EXPECT_FALSE(ParseSize("12Q").ok());
}

TEST(FormatSize, PicksAReadableUnit) {
  EXPECT_EQ(FormatSize(512), "512 B");
  EXPECT_EQ(FormatSize(64 << 10), "64.0 KiB");
  EXPECT_EQ(FormatSize(1288490188), "1.20 GiB");
}

}  // namespace
}  // namespace qcfs
