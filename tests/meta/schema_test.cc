#include "qcfs/meta/schema.h"

#include <gtest/gtest.h>

#include "qcfs/meta/meta_db.h"
#include "tests/testutil/temp_dir.h"

namespace qcfs::schema {
namespace {

TEST(Schema, RecordsRoundTrip) {
  InodeRecord i;
  i.epoch = 3;
  i.mode = 0100644;
  i.uid = 1000;
  i.nlink = 2;
  i.size = 1ull << 40;
  i.mtime_ns = -5;  // before the epoch
  i.symlink = "target";
  i.chunks = 9;
  std::string v;
  i.EncodeTo(&v);
  InodeRecord back;
  ASSERT_TRUE(InodeRecord::Decode(v, &back));
  EXPECT_EQ(back.size, i.size);
  EXPECT_EQ(back.mtime_ns, -5);
  EXPECT_EQ(back.symlink, "target");
  EXPECT_EQ(back.chunks, 9u);

  ChunkIndexRecord c{7, 4096, 900, 3000, 2, 5, 100, 6000, 450};
  v.clear();
  c.EncodeTo(&v);
  ChunkIndexRecord cb;
  ASSERT_TRUE(ChunkIndexRecord::Decode(v, &cb));
  EXPECT_EQ(cb.refcount, 5u);
  EXPECT_EQ(cb.pack_raw, 6000u);
  EXPECT_TRUE(cb.packed());
}

TEST(Schema, InodeFlagsRoundTripAndOldRecordsMayHaveAttributes) {
  InodeRecord i;
  i.epoch = 3;
  i.mode = 0100644;
  std::string v;
  i.EncodeTo(&v);
  InodeRecord back;
  ASSERT_TRUE(InodeRecord::Decode(v, &back));
  EXPECT_EQ(back.flags, 0u);
  i.flags = InodeRecord::kInodeMayHaveXattrs;
  std::string with;
  i.EncodeTo(&with);
  ASSERT_TRUE(InodeRecord::Decode(with, &back));
  EXPECT_EQ(back.flags, InodeRecord::kInodeMayHaveXattrs);
  // Format 1 ended at the name: epoch 3 is one byte, then the format byte.
  std::string old = v.substr(0, v.size() - 1);
  ASSERT_EQ(old[1], 2);
  old[1] = 1;
  ASSERT_TRUE(InodeRecord::Decode(old, &back));
  EXPECT_EQ(back.flags, InodeRecord::kInodeMayHaveXattrs);  // unknown: walk them
  EXPECT_EQ(back.mode, 0100644u);
  old[1] = 3;
  EXPECT_FALSE(InodeRecord::Decode(old, &back));
}

TEST(Schema, DecodersRejectTruncatedAndTrailingBytes) {
  InodeRecord i;
  std::string v;
  i.EncodeTo(&v);
  InodeRecord back;
  for (size_t n = 0; n < v.size(); ++n) EXPECT_FALSE(InodeRecord::Decode(v.substr(0, n), &back)) << n;
  EXPECT_FALSE(InodeRecord::Decode(v + "x", &back));
  DirentRecord d;
  EXPECT_FALSE(DirentRecord::Decode("", &d));
}

TEST(Schema, KeysSortNumerically) {
  EXPECT_LT(ExtentKey(5, 255), ExtentKey(5, 256));
  EXPECT_LT(ExtentKey(5, UINT64_MAX), ExtentKey(6, 0));
  EXPECT_LT(DirentKey(1, "a"), DirentKey(2, ""));
  EXPECT_TRUE(DirentKey(7, "name").starts_with(DirentPrefix(7)));
}

TEST(MetaDb, PrefixIterationStopsAtThePrefix) {
  testing::TempDir dir;
  MetaOptions o;
  o.create = true;
  auto db = MetaDb::Open(dir.Join("db"), o);
  ASSERT_TRUE(db.ok());
  rocksdb::WriteBatch b;
  for (int ino = 1; ino <= 3; ++ino) {
    for (int idx = 0; idx < 4; ++idx) b.Put(ExtentKey(ino, idx), "x");
  }
  ASSERT_TRUE((*db)->Write(&b, true).ok());
  auto it = (*db)->Iterate(ExtentPrefix(2));
  int n = 0;
  for (it->Seek(); it->Valid(); it->Next()) ++n;
  EXPECT_EQ(n, 4);
  auto again = MetaDb::Open(dir.Join("db"), MetaOptions{});
  EXPECT_EQ(again.status().code(), EBUSY) << again.status().ToString();
}

// Only RocksDB's own lock errors mean "in use": an IO error that mentions
// a block (which contains "lock") is EIO.
TEST(MetaDb, OnlyLockFileErrorsAreBusy) {
  EXPECT_EQ(FromRocks(rocksdb::Status::IOError("lock hold by current process, acquire time 1 acquiring thread 2",
                                               "/db/LOCK: No locks available"),
                      "open")
                .code(),
            EBUSY);
  EXPECT_EQ(FromRocks(rocksdb::Status::IOError("While lock file", "/db/LOCK: Resource temporarily unavailable"), "open")
                .code(),
            EBUSY);
  EXPECT_EQ(FromRocks(rocksdb::Status::IOError("metadata file 000009.sst: block 3 is bad in both copies"), "read")
                .code(),
            EIO);
  EXPECT_EQ(FromRocks(rocksdb::Status::IOError("While open a file for lock", "/db/LOCK: No such file or directory"),
                      "open")
                .code(),
            EIO);
}

}  // namespace
}  // namespace qcfs::schema
