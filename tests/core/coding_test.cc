#include "qcfs/core/coding.h"

#include <gtest/gtest.h>

#include "qcfs/core/status.h"

namespace qcfs {
namespace {

TEST(Coding, VarintsRoundTrip) {
  std::string buf;
  Encoder e(&buf);
  const uint64_t values[] = {0, 1, 127, 128, 300, 1ull << 35, UINT64_MAX};
  for (uint64_t v : values) e.Varint(v);
  e.SignedVarint(-5);
  e.SignedVarint(INT64_MIN);
  Decoder d(buf);
  for (uint64_t v : values) {
    uint64_t got;
    ASSERT_TRUE(d.Varint(&got));
    EXPECT_EQ(got, v);
  }
  int64_t s;
  ASSERT_TRUE(d.SignedVarint(&s));
  EXPECT_EQ(s, -5);
  ASSERT_TRUE(d.SignedVarint(&s));
  EXPECT_EQ(s, INT64_MIN);
  EXPECT_TRUE(d.done());
}

TEST(Coding, DecoderFailsOnTruncatedInput) {
  std::string buf;
  Encoder(&buf).Varint(1ull << 40);
  buf.pop_back();
  Decoder d(buf);
  uint64_t v;
  EXPECT_FALSE(d.Varint(&v));
  std::string_view sv;
  Decoder d2("\x05" "ab");
  EXPECT_FALSE(d2.String(&sv));
}

TEST(Coding, BigEndianKeysSortNumerically) {
  std::string a, b;
  PutBig64(&a, 255);
  PutBig64(&b, 256);
  EXPECT_LT(a, b);
  EXPECT_EQ(GetBig64(b.data()), 256u);
}

TEST(Status, CarriesErrnoAndContext) {
  Status s = Status::Errorf(EIO, "chunk {} damaged", 7);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), EIO);
  EXPECT_EQ(s.WithContext("reading a").ToString(), "reading a: chunk 7 damaged");
  EXPECT_TRUE(Status::Ok().ok());
}

}  // namespace
}  // namespace qcfs
