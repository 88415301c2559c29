// qcfs check finds every kind of inconsistency it claims to, and repair
// fixes what it says it fixed.
#include "qcfs/check/check.h"

#include <gtest/gtest.h>

#include "qcfs/meta/metafs.h"
#include "qcfs/meta/schema.h"
#include "tests/testutil/volume_fixture.h"

namespace qcfs {
namespace {

using testing::RandomBytes;
using testing::TestVolume;

rocksdb::Slice Sl(const std::string& s) { return rocksdb::Slice(s); }

// A volume with some files, closed; then `tamper` edits its metadata.
class CheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = v_.CreateFile(kRootIno, "a", RandomBytes(300000, 1));
    b_ = v_.CreateFile(kRootIno, "b", RandomBytes(300000, 1));  // same content: shared chunks
    auto d = v_->Mkdir(kRootIno, "dir", 0755, Caller{});
    ASSERT_TRUE(d.ok());
    dir_ = d->ino;
    c_ = v_.CreateFile(dir_, "c", "small");
    v_.Close();
  }

  // Opens the metadata directly (as maintenance tools do), applies `fn`.
  void Tamper(const std::function<void(MetaDb*, rocksdb::WriteBatch*)>& fn) {
    VolumeOptions vo;
    vo.maintenance = true;
    auto v = Volume::Open(v_.image(), vo);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    rocksdb::WriteBatch batch;
    fn((*v)->db(), &batch);
    ASSERT_TRUE((*v)->db()->Write(&batch, true).ok());
    ASSERT_TRUE((*v)->Close().ok());
  }

  CheckReport Check(bool repair) {
    CheckOptions o;
    o.repair = repair;
    o.full = true;
    auto r = CheckVolume(v_.image(), o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : CheckReport{};
  }

  static std::string Describe(const CheckReport& r) {
    std::string out;
    for (auto& f : r.findings) out += f.kind + ": " + f.detail + "\n";
    return out;
  }

  void ExpectClean() {
    CheckReport r = Check(false);
    EXPECT_TRUE(r.clean()) << Describe(r);
  }

  bool Has(const CheckReport& r, const std::string& kind) {
    for (auto& f : r.findings) {
      if (f.kind == kind) return true;
    }
    return false;
  }

  TestVolume v_;
  uint64_t a_ = 0, b_ = 0, c_ = 0, dir_ = 0;
};

TEST_F(CheckTest, FreshVolumeIsClean) {
  CheckReport r = Check(false);
  EXPECT_TRUE(r.clean()) << (r.findings.empty() ? "" : r.findings[0].detail);
  EXPECT_EQ(r.files, 3u);
  EXPECT_GT(r.chunks_verified, 0u);
}

TEST_F(CheckTest, WrongRefcountIsFoundAndRepaired) {
  Tamper([&](MetaDb* db, rocksdb::WriteBatch* batch) {
    auto e = db->Get(schema::ExtentKey(a_, 0));
    schema::ExtentRecord ext;
    ASSERT_TRUE(schema::ExtentRecord::Decode(**e, &ext));
    auto c = db->Get(schema::ChunkKey(ext.fp));
    schema::ChunkIndexRecord rec;
    ASSERT_TRUE(schema::ChunkIndexRecord::Decode(**c, &rec));
    EXPECT_EQ(rec.refcount, 2u);
    rec.refcount = 7;
    std::string v;
    rec.EncodeTo(&v);
    batch->Put(Sl(schema::ChunkKey(ext.fp)), Sl(v));
  });
  EXPECT_TRUE(Has(Check(false), "refcount"));
  EXPECT_TRUE(Has(Check(true), "refcount"));
  ExpectClean();
}

TEST_F(CheckTest, LeakedChunkAndBadCountersAreRepaired) {
  Tamper([&](MetaDb*, rocksdb::WriteBatch* batch) {
    // A file's extents vanish but its chunk entries stay: leaks.
    batch->Delete(Sl(schema::ExtentKey(c_, 0)));
    schema::VolumeState vs;
    vs.next_ino = 2;  // already in use
    vs.inodes = 99;
    std::string v;
    vs.EncodeTo(&v);
    batch->Put(Sl(schema::SystemKey(schema::kVolumeStateName)), Sl(v));
  });
  CheckReport found = Check(false);
  EXPECT_TRUE(Has(found, "leaked-chunk"));
  EXPECT_TRUE(Has(found, "next-inode"));
  EXPECT_TRUE(Has(found, "inode-count"));
  EXPECT_TRUE(Has(found, "chunk-count"));
  CheckReport repaired = Check(true);
  EXPECT_EQ(repaired.unrepaired(), 0u);
  ExpectClean();
  v_.Open();
  EXPECT_EQ(v_.ReadAll(a_), RandomBytes(300000, 1));
}

// An attribute its inode's record does not mention would outlive the inode
// (removal walks attributes only when the record says there may be some).
TEST_F(CheckTest, AttributeWithoutTheInodeFlagIsFoundAndRepaired) {
  Tamper([&](MetaDb*, rocksdb::WriteBatch* batch) {
    std::string v;
    schema::XattrRecord{1, "blue"}.EncodeTo(&v);
    batch->Put(Sl(schema::XattrKey(c_, "user.color")), Sl(v));
  });
  EXPECT_TRUE(Has(Check(false), "xattr-flag"));
  EXPECT_TRUE(Has(Check(true), "xattr-flag"));
  ExpectClean();
  v_.Open();
  EXPECT_EQ(*v_->GetXattr(c_, "user.color"), "blue");
  ASSERT_TRUE(v_->Unlink(dir_, "c").ok());
  v_.Close();
  ExpectClean();  // no stale-xattr: the repaired flag made unlink remove it
}

// The device's segment table says a segment holding chunks is free: check
// reports it, and the next read-write open records it as data again before
// anything could be written over it.
TEST_F(CheckTest, DataSegmentRecordedFreeIsFoundAndReclaimed) {
  {
    VolumeOptions vo;
    vo.maintenance = true;
    auto v = Volume::Open(v_.image(), vo);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    auto e = (*v)->db()->Get(schema::ExtentKey(a_, 0));
    schema::ExtentRecord ext;
    ASSERT_TRUE(schema::ExtentRecord::Decode(**e, &ext));
    auto c = (*v)->db()->Get(schema::ChunkKey(ext.fp));
    schema::ChunkIndexRecord rec;
    ASSERT_TRUE(schema::ChunkIndexRecord::Decode(**c, &rec));
    ASSERT_EQ((*v)->space()->Use(rec.segment), SegmentUse::kData);
    ASSERT_TRUE((*v)->space()->ReleaseDataSegment(rec.segment).ok());
    ASSERT_TRUE((*v)->Close().ok());
  }
  CheckReport found = Check(false);
  EXPECT_TRUE(Has(found, "segment-owner")) << Describe(found);
  v_.Open();
  EXPECT_EQ(v_.ReadAll(a_), RandomBytes(300000, 1));
  v_.Close();
  ExpectClean();
}

// A flipped bit in one copy of the metadata journal: check reports the
// record read from the other copy, repair (a read-write mount) writes both
// copies afresh, and nothing is lost.
TEST_F(CheckTest, FlipInOneJournalCopyIsReportedAndRepairRewritesBoth) {
  uint64_t at = 0;
  {
    VolumeOptions vo;
    vo.read_only = true;
    auto v = Volume::Open(v_.image(), vo);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    const MetaFs::Extent first = (*v)->space()->JournalExtents().front();
    ASSERT_FALSE((*v)->space()->JournalMirrorExtents().empty());
    at = first.offset + std::min(first.length, (*v)->space()->Usage().journal_bytes) / 2;
  }
  {
    auto dev = OpenDevice(v_.image(), DeviceOptions{});
    ASSERT_TRUE(dev.ok()) << dev.status().ToString();
    std::byte b;
    ASSERT_TRUE((*dev)->Read(at, {&b, 1}).ok());
    b ^= std::byte{0x10};
    ASSERT_TRUE((*dev)->Write(at, {&b, 1}).ok());
    ASSERT_TRUE((*dev)->Sync().ok());
  }
  CheckReport found = Check(false);
  ASSERT_EQ(found.findings.size(), 1u) << Describe(found);
  EXPECT_EQ(found.findings[0].kind, "journal-copy");
  EXPECT_NE(found.findings[0].detail.find("1 record repaired from its mirror copy"), std::string::npos)
      << found.findings[0].detail;
  EXPECT_FALSE(found.findings[0].repaired);
  CheckReport repaired = Check(true);
  EXPECT_TRUE(Has(repaired, "journal-copy"));
  EXPECT_EQ(repaired.unrepaired(), 0u) << Describe(repaired);
  ExpectClean();
  v_.Open();
  EXPECT_EQ(v_.ReadAll(a_), RandomBytes(300000, 1));
  EXPECT_EQ(v_.ReadAll(c_), "small");
}

// A flipped bit in one copy of a block of a RocksDB table: check reports
// the block, repair rewrites that copy from the other, and nothing is lost.
// (A MANIFEST is replaced by RocksDB's read-write open, which reads it
// through the good copy.)
TEST_F(CheckTest, FlipInOneCopyOfAMetadataFileIsReportedAndRepairRewritesIt) {
  for (int copy = 0; copy < 2; ++copy) {
    SCOPED_TRACE(copy == 0 ? "primary" : "mirror");
    uint64_t at = 0;
    {
      VolumeOptions vo;
      vo.read_only = true;
      auto v = Volume::Open(v_.image(), vo);
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      MetaFs* space = (*v)->space();
      for (const std::string& name : space->List("")) {
        if (!name.ends_with(".sst")) continue;
        const auto extents = copy == 0 ? space->FileExtents().at(name) : space->FileMirrorExtents().at(name);
        ASSERT_FALSE(extents.empty());
        ASSERT_NE(extents.front().length, 0u) << name << " has no mirror";
        at = extents.front().offset + std::min(extents.front().length, *space->FileSize(name)) / 2;
        break;
      }
    }
    ASSERT_NE(at, 0u);
    {
      auto dev = OpenDevice(v_.image(), DeviceOptions{});
      ASSERT_TRUE(dev.ok()) << dev.status().ToString();
      std::byte b;
      ASSERT_TRUE((*dev)->Read(at, {&b, 1}).ok());
      b ^= std::byte{0x04};
      ASSERT_TRUE((*dev)->Write(at, {&b, 1}).ok());
      ASSERT_TRUE((*dev)->Sync().ok());
    }
    CheckReport found = Check(false);
    ASSERT_EQ(found.findings.size(), 1u) << Describe(found);
    EXPECT_EQ(found.findings[0].kind, "meta-copy");
    EXPECT_NE(found.findings[0].detail.find(copy == 0 ? "1 block read from the mirror copy" : "1 block damaged in the mirror copy"),
              std::string::npos)
        << found.findings[0].detail;
    EXPECT_FALSE(found.findings[0].repaired);
    CheckReport repaired = Check(true);
    EXPECT_TRUE(Has(repaired, "meta-copy"));
    EXPECT_EQ(repaired.unrepaired(), 0u) << Describe(repaired);
    ExpectClean();
    v_.Open();
    EXPECT_EQ(v_.ReadAll(a_), RandomBytes(300000, 1));
    EXPECT_EQ(v_.ReadAll(c_), "small");
    v_.Close();
  }
}

TEST_F(CheckTest, LinkCountsAndUnreachableInodes) {
  Tamper([&](MetaDb* db, rocksdb::WriteBatch* batch) {
    auto raw = db->Get(schema::InodeKey(a_));
    schema::InodeRecord rec;
    ASSERT_TRUE(schema::InodeRecord::Decode(**raw, &rec));
    rec.nlink = 5;
    std::string v;
    rec.EncodeTo(&v);
    batch->Put(Sl(schema::InodeKey(a_)), Sl(v));
    batch->Delete(Sl(schema::DirentKey(dir_, "c")));  // c is lost, its dir miscounts
  });
  CheckReport found = Check(false);
  EXPECT_TRUE(Has(found, "nlink"));
  EXPECT_TRUE(Has(found, "unreachable"));
  EXPECT_TRUE(Has(found, "dir-size"));
  Check(true);
  ExpectClean();
  v_.Open();
  auto lost = v_->Lookup(kRootIno, "lost+found");
  ASSERT_TRUE(lost.ok());
  auto found_c = v_->Lookup(lost->ino, "#" + std::to_string(c_));
  ASSERT_TRUE(found_c.ok()) << "the unreachable file is kept in /lost+found";
  EXPECT_EQ(v_.ReadAll(c_), "small");
  EXPECT_EQ(v_->GetAttr(a_)->nlink, 1u);
}

}  // namespace
}  // namespace qcfs
