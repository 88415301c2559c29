// MetaFs: the metadata files on the device, their journal, and RocksDB on
// top of them, including power cuts in the middle of flushes and compactions.
#include "qcfs/meta/metafs.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>

#include <fmt/format.h>

#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <xxhash.h>

#include "qcfs/core/coding.h"
#include "qcfs/io/mem_device.h"
#include "qcfs/meta/meta_db.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/testutil/temp_dir.h"

namespace qcfs {
namespace {

using testing::TempDir;

MetaFsLayout Layout(uint64_t device_size) {
  MetaFsLayout l;
  l.data_offset = 1 << 20;
  l.segment_size = 1 << 20;
  l.segment_count = (device_size - l.data_offset) / l.segment_size;
  l.uuid[0] = 7;
  return l;
}

std::span<const std::byte> B(const std::string& s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

std::string ReadAll(MetaFs* fs, const std::string& name) {
  auto f = fs->Open(name);
  if (!f.ok()) return "<" + f.status().ToString() + ">";
  std::string out((*f)->size(), '\0');
  auto n = (*f)->Read(0, std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size()));
  if (!n.ok()) return "<" + n.status().ToString() + ">";
  out.resize(*n);
  return out;
}

TEST(MetaFs, FilesSurviveARemount) {
  MemDevice dev(64 << 20);
  {
    auto fs = *MetaFs::Format(&dev, Layout(dev.size()));
    auto a = *fs->Create("CURRENT");
    ASSERT_TRUE(a->Append(B("MANIFEST-000001\n")).ok());
    ASSERT_TRUE(a->Sync().ok());
    auto big = *fs->Create("000007.sst");
    std::string data(3 << 20, 'x');
    for (size_t i = 0; i < data.size(); i += 4096) data[i] = static_cast<char>(i / 4096);
    ASSERT_TRUE(big->Append(B(data)).ok());
    ASSERT_TRUE(big->Sync().ok());
    ASSERT_TRUE(fs->Rename("CURRENT", "CURRENT.old").ok());
    auto c = *fs->Create("tmp");
    ASSERT_TRUE(c->Append(B("new")).ok());
    ASSERT_TRUE(c->Sync().ok());
    ASSERT_TRUE(fs->Rename("tmp", "CURRENT").ok());
    ASSERT_TRUE(fs->Delete("CURRENT.old").ok());
    ASSERT_TRUE(fs->Sync().ok());
  }
  auto fs = *MetaFs::Mount(&dev, Layout(dev.size()));
  EXPECT_EQ(fs->List(""), (std::vector<std::string>{"000007.sst", "CURRENT"}));
  EXPECT_EQ(ReadAll(fs.get(), "CURRENT"), "new");
  std::string big = ReadAll(fs.get(), "000007.sst");
  ASSERT_EQ(big.size(), 3u << 20);
  EXPECT_EQ(big[4096 * 700], static_cast<char>(700 % 256));
  EXPECT_GE(fs->Usage().meta_segments, 4u);
}

// A root one generation short of the largest (only damage makes one) must
// not mount read-write: the mount would write the largest, which no later
// mount accepts. Found by the metafs fuzzer; nothing may be written.
TEST(MetaFs, RootWhoseNextGenerationIsInvalidMountsOnlyReadOnly) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  ASSERT_TRUE(MetaFs::Format(&dev, layout).ok());
  for (uint64_t at : layout.root_offset) {
    std::string block(4096, '\0');
    ASSERT_TRUE(dev.Read(at, std::span<std::byte>(reinterpret_cast<std::byte*>(block.data()), block.size())).ok());
    const uint64_t generation = UINT64_MAX - 1, synced_records = 0;  // the journal's records name another
    std::memcpy(block.data() + 8, &generation, 8);
    std::memcpy(block.data() + 48, &synced_records, 8);
    const uint64_t sum = XXH3_64bits(block.data(), 64);
    std::memcpy(block.data() + 64, &sum, 8);
    const uint64_t mirror_sum = XXH3_64bits(block.data(), 80);  // covers the first sum and the mirror
    std::memcpy(block.data() + 80, &mirror_sum, 8);
    dev.Poke(at, B(block));
  }
  std::string before(dev.size(), '\0');
  ASSERT_TRUE(dev.Read(0, std::span<std::byte>(reinterpret_cast<std::byte*>(before.data()), before.size())).ok());
  auto rw = MetaFs::Mount(&dev, layout);
  ASSERT_FALSE(rw.ok());
  EXPECT_EQ(rw.status().code(), EUCLEAN);
  EXPECT_NE(rw.status().message().find("read-only"), std::string::npos) << rw.status().ToString();
  std::string after(dev.size(), '\0');
  ASSERT_TRUE(dev.Read(0, std::span<std::byte>(reinterpret_cast<std::byte*>(after.data()), after.size())).ok());
  EXPECT_TRUE(before == after) << "a refused mount wrote to the device";
  EXPECT_TRUE(MetaFs::MountReadOnly(&dev, layout).ok());
}

TEST(MetaFs, SegmentOwnershipIsJournaled) {
  MemDevice dev(64 << 20);
  uint32_t a, b;
  {
    auto fs = *MetaFs::Format(&dev, Layout(dev.size()));
    a = *fs->AcquireDataSegment(2);
    b = *fs->AcquireDataSegment(2);
    EXPECT_NE(a, b);
    EXPECT_EQ(fs->Use(a), SegmentUse::kData);
    ASSERT_TRUE(fs->ReleaseDataSegment(a).ok());
    ASSERT_TRUE(fs->Sync().ok());
  }
  auto fs = *MetaFs::Mount(&dev, Layout(dev.size()));
  // The released segment is free again (the remount's new journal may have
  // taken it already).
  EXPECT_NE(fs->Use(a), SegmentUse::kData);
  EXPECT_EQ(fs->Use(b), SegmentUse::kData);
  // Data never takes the last free segments.
  uint64_t free = fs->Usage().free_segments;
  for (uint64_t i = 0; i + 3 < free; ++i) ASSERT_TRUE(fs->AcquireDataSegment(3).ok());
  EXPECT_EQ(fs->AcquireDataSegment(3).status().code(), ENOSPC);
}

// A large volume: a hundred thousand data segments still fit the
// compact journal (2 bits per segment), which must fit one segment.
TEST(MetaFs, ManySegmentsStayCompactInTheJournal) {
  // A sparse 4 TiB image: only the journal's blocks are ever written.
  TempDir dir;
  const std::string image = dir.Join("big.img");
  ASSERT_TRUE(CreateImageFile(image, 4ull << 40, false).ok());
  auto dev = *OpenDevice(image, DeviceOptions{});
  MetaFsLayout layout = Layout(dev->size());
  {
    auto fs = *MetaFs::Format(dev.get(), layout);
    for (int i = 0; i < 100'000; ++i) ASSERT_TRUE(fs->AcquireDataSegment(2).ok()) << i;
    ASSERT_TRUE(fs->Sync().ok());
    EXPECT_LT(fs->Usage().journal_bytes, 12u << 20);
  }
  auto fs = MetaFs::Mount(dev.get(), layout);
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  EXPECT_EQ((*fs)->Usage().data_segments, 100'000u);
  // The fresh generation holds the map, not a record per segment.
  EXPECT_LT((*fs)->Usage().journal_bytes, 2u << 20);
}

TEST(MetaFs, JournalIsRewrittenCompactly) {
  MemDevice dev(128 << 20);
  {
    auto fs = *MetaFs::Format(&dev, Layout(dev.size()));
    auto f = *fs->Create("000003.log");
    // Each flush journals the new size: hundreds of thousands of records.
    for (int i = 0; i < 400000; ++i) {
      ASSERT_TRUE(f->Append(B("record")).ok());
      ASSERT_TRUE(f->Flush().ok());
    }
    ASSERT_TRUE(f->Sync().ok());
    EXPECT_LT(fs->Usage().journal_bytes, 16u << 20);
  }
  auto fs = *MetaFs::Mount(&dev, Layout(dev.size()));
  EXPECT_EQ(*fs->FileSize("000003.log"), 400000u * 6);
}

TEST(MetaFs, PowerCutKeepsWhatWasSynced) {
  MemDevice dev(64 << 20);
  {
    auto fs = *MetaFs::Format(&dev, Layout(dev.size()));
    auto f = *fs->Create("000005.log");
    ASSERT_TRUE(f->Append(B("synced;")).ok());
    ASSERT_TRUE(f->Sync().ok());
    ASSERT_TRUE(f->Append(B("flushed only;")).ok());
    ASSERT_TRUE(f->Flush().ok());
    auto g = *fs->Create("unsynced-file");
    ASSERT_TRUE(g->Append(B("gone")).ok());
    ASSERT_TRUE(g->Flush().ok());
  }
  dev.DropUnsynced();
  auto fs = MetaFs::Mount(&dev, Layout(dev.size()));
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  std::string log = ReadAll(fs->get(), "000005.log");
  EXPECT_EQ(log.substr(0, 7), "synced;");
}

// ---------------------------------------------------------------- the journal's two copies

void FlipBit(MemDevice* dev, uint64_t at, int bit) {
  std::byte b;
  dev->Peek(at, {&b, 1});
  b ^= std::byte(1u << (bit % 8));
  dev->Poke(at, {&b, 1});
}

// The device offset of byte `pos` of a journal copy laid out in `extents`.
uint64_t JournalByte(const std::vector<MetaFs::Extent>& extents, uint64_t pos) {
  for (const MetaFs::Extent& e : extents) {
    if (pos < e.length) return e.offset + pos;
    pos -= e.length;
  }
  ADD_FAILURE() << "journal position beyond its extents";
  return 0;
}

struct JournalLayout {
  std::vector<MetaFs::Extent> copy[2];  // primary, mirror
  uint64_t bytes = 0;                   // of each copy
};

JournalLayout ReadJournalLayout(MemDevice* dev, const MetaFsLayout& layout) {
  auto fs = MetaFs::MountReadOnly(dev, layout);
  EXPECT_TRUE(fs.ok()) << fs.status().ToString();
  if (!fs.ok()) return {};
  return {{(*fs)->JournalExtents(), (*fs)->JournalMirrorExtents()}, (*fs)->Usage().journal_bytes};
}

// A volume whose journal spans several extents, every record synced (and the
// root counting them durable): two files, and a size record per truncate.
void WriteSyncedJournal(MemDevice* dev, const MetaFsLayout& layout) {
  auto fs = *MetaFs::Format(dev, layout);
  auto current = *fs->Create("CURRENT");
  ASSERT_TRUE(current->Append(B("MANIFEST-000007\n")).ok());
  ASSERT_TRUE(current->Sync().ok());
  auto log = *fs->Create("000009.log");
  ASSERT_TRUE(log->Append(B(std::string(10000, 'l'))).ok());
  ASSERT_TRUE(log->Sync().ok());
  for (int i = 0; i < 100'000; ++i) ASSERT_TRUE(fs->Truncate("000009.log", 9999).ok());
  ASSERT_TRUE(fs->Sync().ok());
  ASSERT_TRUE(fs->Sync().ok());  // makes the root counting every record durable
}

void ExpectSyncedJournalState(MetaFs* fs) {
  EXPECT_EQ(ReadAll(fs, "CURRENT"), "MANIFEST-000007\n");
  EXPECT_EQ(*fs->FileSize("000009.log"), 9999u);
  EXPECT_EQ(ReadAll(fs, "000009.log"), std::string(9999, 'l'));
}

TEST(MetaFs, JournalCopiesLieInDifferentSegments) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  WriteSyncedJournal(&dev, layout);
  JournalLayout j = ReadJournalLayout(&dev, layout);
  ASSERT_GE(j.copy[0].size(), 2u) << "the journal should chain extents";
  ASSERT_EQ(j.copy[0].size(), j.copy[1].size());
  auto segment = [&](uint64_t offset) { return (offset - layout.data_offset) / layout.segment_size; };
  for (size_t i = 0; i < j.copy[0].size(); ++i) {
    EXPECT_EQ(j.copy[0][i].length, j.copy[1][i].length);
    EXPECT_NE(segment(j.copy[0][i].offset), segment(j.copy[1][i].offset)) << "extent " << i;
  }
}

// A flipped bit in either copy of a synced record, in the first extent or a
// chained one: the mount takes the other copy, loses nothing, reports it,
// and its new generation leaves both copies whole.
TEST(MetaFs, FlipInOneJournalCopyLosesNothingSynced) {
  for (int copy = 0; copy < 2; ++copy) {
    for (double where : {0.001, 0.5, 0.999}) {
      SCOPED_TRACE(fmt::format("copy {}, at {} of the journal", copy, where));
      MemDevice dev(64 << 20);
      const MetaFsLayout layout = Layout(dev.size());
      WriteSyncedJournal(&dev, layout);
      JournalLayout j = ReadJournalLayout(&dev, layout);
      FlipBit(&dev, JournalByte(j.copy[copy], static_cast<uint64_t>(static_cast<double>(j.bytes) * where)), 5);
      {
        auto ro = MetaFs::MountReadOnly(&dev, layout);
        ASSERT_TRUE(ro.ok()) << ro.status().ToString();
        ExpectSyncedJournalState(ro->get());
        const MetaFs::JournalCopies& c = (*ro)->journal_copies();
        EXPECT_TRUE(c.mirrored);
        EXPECT_EQ(c.primary_damaged, copy == 0 ? 1u : 0u);
        EXPECT_EQ(c.mirror_damaged, copy == 1 ? 1u : 0u);
        EXPECT_FALSE(c.rewritten);
      }
      {
        auto rw = MetaFs::Mount(&dev, layout);
        ASSERT_TRUE(rw.ok()) << rw.status().ToString();
        ExpectSyncedJournalState(rw->get());
        EXPECT_EQ((*rw)->journal_copies().damaged(), 1u);
        EXPECT_TRUE((*rw)->journal_copies().rewritten);
      }
      auto again = MetaFs::MountReadOnly(&dev, layout);
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      ExpectSyncedJournalState(again->get());
      EXPECT_EQ((*again)->journal_copies().damaged(), 0u) << "the mount did not rewrite the damaged copy";
    }
  }
}

// A torn write of one copy's last block (half of it reads back as zeros:
// its first half, or the half holding the last record) damages synced
// records that block held: the other copy has them.
TEST(MetaFs, TornBlockInOneJournalCopyLosesNothingSynced) {
  for (int copy = 0; copy < 2; ++copy) {
    for (bool last_half : {false, true}) {
      SCOPED_TRACE(fmt::format("copy {}, {} half of its last block", copy,
                               last_half ? "the last record's" : "the first"));
      MemDevice dev(64 << 20);
      const MetaFsLayout layout = Layout(dev.size());
      WriteSyncedJournal(&dev, layout);
      JournalLayout j = ReadJournalLayout(&dev, layout);
      const uint64_t last_byte = JournalByte(j.copy[copy], j.bytes - 1);
      dev.Poke(last_half ? last_byte / 2048 * 2048 : last_byte / 4096 * 4096, B(std::string(2048, '\0')));
      auto rw = MetaFs::Mount(&dev, layout);
      ASSERT_TRUE(rw.ok()) << rw.status().ToString();
      ExpectSyncedJournalState(rw->get());
      EXPECT_GT((*rw)->journal_copies().damaged(), 0u);
      EXPECT_EQ(copy == 0 ? (*rw)->journal_copies().mirror_damaged : (*rw)->journal_copies().primary_damaged, 0u);
    }
  }
}

// A copy that cannot be read at all (EIO on its first extent) is a copy
// whose records do not verify: the mount reads the other.
TEST(MetaFs, UnreadableJournalCopyLosesNothingSynced) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  WriteSyncedJournal(&dev, layout);
  const MetaFs::Extent bad = ReadJournalLayout(&dev, layout).copy[0].front();
  dev.SetFaultHook([&](const IoOp& op) {
    if (op.kind == IoOp::Kind::kRead && op.offset < bad.offset + bad.length && op.offset + op.length > bad.offset) {
      return Status::Error(EIO, "unreadable sector");
    }
    return Status::Ok();
  });
  auto ro = MetaFs::MountReadOnly(&dev, layout);
  dev.SetFaultHook(nullptr);
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  ExpectSyncedJournalState(ro->get());
  EXPECT_GT((*ro)->journal_copies().primary_damaged, 0u);
}

// The same record damaged in both copies is the one case that refuses the
// mount; rolling back (check --repair) keeps what precedes it.
TEST(MetaFs, DamageInBothJournalCopiesRefusesTheMountUntilRolledBack) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  WriteSyncedJournal(&dev, layout);
  JournalLayout j = ReadJournalLayout(&dev, layout);
  for (int copy = 0; copy < 2; ++copy) FlipBit(&dev, JournalByte(j.copy[copy], j.bytes / 2), copy + 1);
  auto refused = MetaFs::Mount(&dev, layout);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), EUCLEAN);
  EXPECT_NE(refused.status().message().find("both its copies"), std::string::npos) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("qcfs check --repair"), std::string::npos) << refused.status().ToString();
  EXPECT_FALSE(MetaFs::MountReadOnly(&dev, layout).ok());
  auto rolled = MetaFs::Mount(&dev, layout, MetaFs::Damage::kRollBack);
  ASSERT_TRUE(rolled.ok()) << rolled.status().ToString();
  EXPECT_FALSE((*rolled)->rolled_back().empty());
  EXPECT_EQ(ReadAll(rolled->get(), "CURRENT"), "MANIFEST-000007\n");  // journaled before the damage
  rolled->reset();
  EXPECT_TRUE(MetaFs::Mount(&dev, layout).ok());
}

// A volume from before mirroring: its roots name no mirror (bytes 72..88
// zero) and its journal has one copy. It mounts, and its next generation
// has two.
TEST(MetaFs, JournalFromBeforeMirroringMountsAndGainsAMirror) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  {
    auto fs = *MetaFs::Format(&dev, layout);
    auto f = *fs->Create("CURRENT");
    ASSERT_TRUE(f->Append(B("MANIFEST-000001\n")).ok());
    ASSERT_TRUE(f->Sync().ok());
    ASSERT_TRUE(fs->Sync().ok());
    ASSERT_EQ(fs->JournalExtents().size(), 1u);
    // As an older qcfs left it: no mirror named, none on the device.
    const MetaFs::Extent mirror = fs->JournalMirrorExtents().at(0);
    dev.Poke(mirror.offset, B(std::string(mirror.length, '\0')));
    for (uint64_t at : layout.root_offset) dev.Poke(at + 72, B(std::string(16, '\0')));
  }
  {
    auto ro = MetaFs::MountReadOnly(&dev, layout);
    ASSERT_TRUE(ro.ok()) << ro.status().ToString();
    EXPECT_FALSE((*ro)->journal_copies().mirrored);
    EXPECT_TRUE((*ro)->JournalMirrorExtents().empty());
    EXPECT_EQ(ReadAll(ro->get(), "CURRENT"), "MANIFEST-000001\n");
  }
  {
    auto rw = MetaFs::Mount(&dev, layout);
    ASSERT_TRUE(rw.ok()) << rw.status().ToString();
    EXPECT_EQ((*rw)->JournalMirrorExtents().size(), 1u);
  }
  auto again = MetaFs::MountReadOnly(&dev, layout);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE((*again)->journal_copies().mirrored);
  EXPECT_EQ((*again)->journal_copies().damaged(), 0u);
  EXPECT_EQ(ReadAll(again->get(), "CURRENT"), "MANIFEST-000001\n");
}

// The device offset of byte `pos` of a file laid out in `extents`.
uint64_t FileByte(const std::vector<MetaFs::Extent>& extents, uint64_t pos) {
  for (const auto& e : extents) {
    if (pos < e.length) return e.offset + pos;
    pos -= e.length;
  }
  ADD_FAILURE() << "byte " << pos << " lies past the file's extents";
  return 0;
}

// A file's extents in one copy (0 primary, 1 mirror).
std::vector<MetaFs::Extent> CopyOf(MetaFs* fs, const std::string& name, int copy) {
  return copy == 0 ? fs->FileExtents().at(name) : fs->FileMirrorExtents().at(name);
}

// Every file's extent has a mirror in another segment, and both hold its bytes.
TEST(MetaFs, FileCopiesLieInDifferentSegments) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  auto fs = *MetaFs::Format(&dev, layout);
  auto f = *fs->Create("000007.sst");
  const std::string data(300000, 'x');
  ASSERT_TRUE(f->Append(B(data)).ok());
  ASSERT_TRUE(f->Sync().ok());
  const auto primary = fs->FileExtents().at("000007.sst");
  const auto mirror = fs->FileMirrorExtents().at("000007.sst");
  ASSERT_EQ(primary.size(), mirror.size());
  for (size_t i = 0; i < primary.size(); ++i) {
    EXPECT_EQ(primary[i].length, mirror[i].length);
    EXPECT_NE((primary[i].offset - layout.data_offset) / layout.segment_size,
              (mirror[i].offset - layout.data_offset) / layout.segment_size);
  }
  std::string a(data.size(), '\0'), b(data.size(), '\0');
  for (uint64_t at = 0; at < data.size(); at += 4096) {
    const uint64_t n = std::min<uint64_t>(4096, data.size() - at);
    dev.Peek(FileByte(primary, at), std::span<std::byte>(reinterpret_cast<std::byte*>(a.data() + at), n));
    dev.Peek(FileByte(mirror, at), std::span<std::byte>(reinterpret_cast<std::byte*>(b.data() + at), n));
  }
  EXPECT_EQ(a, data);
  EXPECT_EQ(b, data);
}

// A flipped bit in one copy of any block of RocksDB's files costs nothing:
// every synced key reads back, the scrub (qcfs check) counts the block, and
// a repair rewrites the bad copy from the good one.
TEST(MetaFs, FlipInOneCopyOfARocksDbFileLosesNothingSynced) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  ASSERT_TRUE(MetaFs::Format(&dev, layout).ok());
  std::map<std::string, std::string> keys;
  {
    auto fs = *MetaFs::Mount(&dev, layout);
    MetaOptions mo;
    mo.fs = fs.get();
    mo.create = true;
    auto db = MetaDb::Open("/db", mo);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    for (int i = 0; i < 3000; ++i) {
      rocksdb::WriteBatch b;
      keys[fmt::format("k{:05}", i)] = fmt::format("v{}-{}", i, std::string(i % 200, 'v'));
      b.Put(fmt::format("k{:05}", i), keys[fmt::format("k{:05}", i)]);
      ASSERT_TRUE((*db)->Write(&b, i % 100 == 99).ok());
      if (i == 1500) {
        ASSERT_TRUE((*db)->Flush().ok());  // an SST as well as the log
      }
    }
    rocksdb::WriteBatch b;
    ASSERT_TRUE((*db)->Write(&b, true).ok());
  }
  std::mt19937_64 rng(5);
  for (int copy = 0; copy < 2; ++copy) {
    SCOPED_TRACE(copy == 0 ? "primary" : "mirror");
    // A bit of every file, in the one copy.
    uint64_t flipped = 0;
    {
      auto ro = *MetaFs::MountReadOnly(&dev, layout);
      for (const std::string& name : ro->List("")) {
        const uint64_t size = *ro->FileSize(name);
        if (size == 0) continue;
        FlipBit(&dev, FileByte(CopyOf(ro.get(), name, copy), rng() % size), static_cast<int>(rng() % 8));
        ++flipped;
      }
    }
    ASSERT_GE(flipped, 4u);  // CURRENT, OPTIONS, MANIFEST, the log, an SST
    {
      auto fs = MetaFs::MountReadOnly(&dev, layout);
      ASSERT_TRUE(fs.ok()) << fs.status().ToString();
      MetaOptions mo;
      mo.fs = fs->get();
      mo.read_only = true;
      auto db = MetaDb::Open("/db", mo);
      ASSERT_TRUE(db.ok()) << db.status().ToString();
      for (auto& [k, v] : keys) {
        auto got = (*db)->Get(k);
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        ASSERT_TRUE(got->has_value()) << "lost synced key " << k;
        ASSERT_EQ(**got, v);
      }
      db->reset();
      auto found = (*fs)->ScrubFiles(true);  // read-only: counts, repairs nothing
      ASSERT_TRUE(found.ok()) << found.status().ToString();
      EXPECT_EQ(copy == 0 ? found->primary_damaged : found->mirror_damaged, flipped);
      EXPECT_EQ(copy == 0 ? found->mirror_damaged : found->primary_damaged, 0u);
      EXPECT_EQ(found->both_damaged, 0u);
      EXPECT_EQ(found->repaired, 0u);
    }
    {
      auto fs = MetaFs::Mount(&dev, layout);
      ASSERT_TRUE(fs.ok()) << fs.status().ToString();
      auto repaired = (*fs)->ScrubFiles(true);
      ASSERT_TRUE(repaired.ok()) << repaired.status().ToString();
      EXPECT_EQ(repaired->repaired, flipped);
      auto again = (*fs)->ScrubFiles(false);
      ASSERT_TRUE(again.ok());
      EXPECT_EQ(again->primary_damaged + again->mirror_damaged + again->both_damaged, 0u);
    }
  }
}

// The same block damaged in both copies is lost: its reads fail with EIO
// (RocksDB reports the corruption), and the scrub counts it.
TEST(MetaFs, FileBlockDamagedInBothCopiesReadsAsEio) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  {
    auto fs = *MetaFs::Format(&dev, layout);
    auto f = *fs->Create("000009.sst");
    ASSERT_TRUE(f->Append(B(std::string(20000, 's'))).ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  {
    auto fs = *MetaFs::MountReadOnly(&dev, layout);
    for (int copy = 0; copy < 2; ++copy) FlipBit(&dev, FileByte(CopyOf(fs.get(), "000009.sst", copy), 9000), copy);
  }
  auto fs = *MetaFs::MountReadOnly(&dev, layout);
  auto f = *fs->Open("000009.sst");
  std::string out(100, '\0');
  auto bad = f->Read(8900, std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size()));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), EIO);
  EXPECT_NE(bad.status().message().find("both its copies"), std::string::npos) << bad.status().ToString();
  // The blocks around it read as they should.
  auto good = f->Read(100, std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size()));
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(out, std::string(100, 's'));
  auto found = fs->ScrubFiles(false);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->both_damaged, 1u);
}

// Appends that extend a block checksummed at an earlier sync, and a
// truncation into the middle of a block, keep each block's checksum true
// across remounts.
TEST(MetaFs, PartialBlocksKeepTheirChecksumsAcrossAppendsAndTruncation) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  std::string want;
  {
    auto fs = *MetaFs::Format(&dev, layout);
    auto f = *fs->Create("MANIFEST-000001");
    for (int i = 0; i < 40; ++i) {
      const std::string piece = fmt::format("edit {} {}\n", i, std::string(i * 37 % 500, 'e'));
      want += piece;
      ASSERT_TRUE(f->Append(B(piece)).ok());
      ASSERT_TRUE(f->Sync().ok());
    }
  }
  for (int round = 0; round < 2; ++round) {
    auto fs = *MetaFs::Mount(&dev, layout);
    ASSERT_TRUE(ReadAll(fs.get(), "MANIFEST-000001") == want) << "the file differs";
    auto f = *fs->Open("MANIFEST-000001");
    const std::string more = round == 0 ? std::string(5000, 'm') : "tail";
    want += more;
    ASSERT_TRUE(f->Append(B(more)).ok());
    ASSERT_TRUE(f->Sync().ok());
    ASSERT_TRUE(ReadAll(fs.get(), "MANIFEST-000001") == want) << "the file differs";
    want.resize(want.size() - 1234);
    ASSERT_TRUE(fs->Truncate("MANIFEST-000001", want.size()).ok());
    ASSERT_TRUE(fs->Sync().ok());
    auto found = fs->ScrubFiles(false);
    ASSERT_TRUE(found.ok());
    EXPECT_EQ(found->primary_damaged + found->mirror_damaged + found->both_damaged, 0u);
  }
  auto fs = *MetaFs::MountReadOnly(&dev, layout);
  EXPECT_TRUE(ReadAll(fs.get(), "MANIFEST-000001") == want) << "the file differs";
  auto found = fs->ScrubFiles(false);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->primary_damaged + found->mirror_damaged + found->both_damaged, 0u);
}

// A sync whose size record failed to reach the journal leaves the block
// checksums journaled before it without a size: replay keeps the earlier
// checksums, which still describe the file it has.
TEST(MetaFs, ChecksumsWithoutTheirSizeRecordAreNotTaken) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  {
    auto fs = *MetaFs::Format(&dev, layout);
    auto f = *fs->Create("LOG");
    ASSERT_TRUE(f->Append(B("hello")).ok());
    ASSERT_TRUE(f->Sync().ok());
    ASSERT_TRUE(f->Append(B(" world")).ok());
    // Writes: the data (two copies), the checksum record (two), the size
    // record (two): the last two fail.
    std::atomic<int> writes{0};
    dev.SetFaultHook([&](const IoOp& op) {
      if (op.kind == IoOp::Kind::kWrite && ++writes >= 5) return Status::Error(EIO, "injected write error");
      return Status::Ok();
    });
    EXPECT_FALSE(f->Sync().ok());
    dev.SetFaultHook(nullptr);
    ASSERT_TRUE(fs->Sync().ok());  // the checksum record is durable now
  }
  auto fs = MetaFs::MountReadOnly(&dev, layout);
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  EXPECT_TRUE(ReadAll(fs->get(), "LOG") == "hello") << "the file differs";
  auto found = (*fs)->ScrubFiles(false);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->primary_damaged + found->mirror_damaged + found->both_damaged, 0u);
}

// A file written before file copies (as an older qcfs journals it: an
// extent with no mirror, no block checksums, a journal with one copy) is
// read from its one copy; what is appended to it later gets a mirror and
// checksums, and survives a flip in one copy.
TEST(MetaFs, FileFromBeforeFileCopiesIsReadAndGrowsWithTwoCopies) {
  MemDevice dev(64 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  const uint64_t journal_at = layout.SegmentOffset(0), file_at = layout.SegmentOffset(1);
  const std::string old_data = std::string(5000, 'o') + "end of the old bytes";
  {
    auto record = [&](uint8_t type, auto&& fill) {
      std::string p;
      Encoder e(&p);
      fill(e);
      return fuzz::EncodeJournalRecord(type, 1, p, layout.uuid);
    };
    std::string journal = record(8, [&](Encoder& e) {  // segments 0 and 1 hold metadata
      e.Fixed32(0);
      e.Fixed32(2);
      e.Bytes(std::string(1, static_cast<char>(2 | 2 << 2)));
    });
    journal += record(2, [](Encoder& e) {
      e.Varint(1);
      e.String("MANIFEST-000001");
    });
    journal += record(5, [&](Encoder& e) {
      e.Varint(1);
      e.Varint(file_at);
      e.Varint(64 << 10);
    });
    journal += record(6, [&](Encoder& e) {
      e.Varint(1);
      e.Varint(old_data.size());
    });
    dev.Poke(journal_at, B(journal));
    dev.Poke(file_at, B(old_data));
    dev.Poke(layout.root_offset[1], B(fuzz::EncodeRoot(1, journal_at, 64 << 10, layout.uuid, 4, 1)));
  }
  {
    auto ro = MetaFs::MountReadOnly(&dev, layout);
    ASSERT_TRUE(ro.ok()) << ro.status().ToString();
    EXPECT_TRUE(ReadAll(ro->get(), "MANIFEST-000001") == old_data) << "the file differs";
    EXPECT_EQ((*ro)->FileMirrorExtents().at("MANIFEST-000001").at(0).length, 0u);
  }
  const std::string more(70000, 'n');
  {
    auto fs = MetaFs::Mount(&dev, layout);
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    auto f = *(*fs)->Open("MANIFEST-000001");
    ASSERT_TRUE(f->Append(B(more)).ok());
    ASSERT_TRUE(f->Sync().ok());
  }
  auto fs = *MetaFs::MountReadOnly(&dev, layout);
  EXPECT_TRUE(ReadAll(fs.get(), "MANIFEST-000001") == old_data + more) << "the file differs";
  const auto primary = fs->FileExtents().at("MANIFEST-000001");
  const auto mirror = fs->FileMirrorExtents().at("MANIFEST-000001");
  ASSERT_GE(primary.size(), 2u);
  EXPECT_EQ(mirror.front().length, 0u);
  EXPECT_NE(mirror.back().length, 0u);
  // A flip in the primary copy of the appended part (past the old extent).
  FlipBit(&dev, FileByte(primary, (64 << 10) + 1000), 2);
  auto again = *MetaFs::MountReadOnly(&dev, layout);
  EXPECT_TRUE(ReadAll(again.get(), "MANIFEST-000001") == old_data + more) << "the file differs";
  auto found = again->ScrubFiles(false);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->primary_damaged, 1u);
}

// RocksDB on MetaFs: a power cut at a random device write in the middle of
// flushes and compactions loses nothing that was synced, whether the writes
// since the last sync are all lost or reached the media in any order; nor
// does a flipped bit in one copy of the journal on top of a cut.
// `dev` holds a formatted MetaFs; `check` is called on each mount.
void RocksDbPowerCuts(MemDevice& dev, const MetaFsLayout& layout, int default_rounds,
                      const std::function<void(MetaFs*)>& check) {
  const int rounds =
      std::getenv("QCFS_POWERCUT_ROUNDS") ? std::atoi(std::getenv("QCFS_POWERCUT_ROUNDS")) : default_rounds;
  std::mt19937_64 rng(std::getenv("QCFS_POWERCUT_SEED") ? std::strtoull(std::getenv("QCFS_POWERCUT_SEED"), nullptr, 10) : 99);
  // For each key: the value that must survive, and values written after it
  // (unsynced, or a sync that failed) that may have survived instead.
  std::map<std::string, std::string> synced;
  std::map<std::string, std::set<std::string>> maybe;
  bool created = false;
  uint64_t checked = 0, copies_damaged = 0;
  for (int round = 0; round < rounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto fs = MetaFs::Mount(&dev, layout);
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    copies_damaged += (*fs)->journal_copies().damaged();
    check(fs->get());
    if (::testing::Test::HasFatalFailure()) return;
    MetaOptions mo;
    mo.fs = fs->get();
    mo.create = !created;
    mo.write_buffer_bytes = 1 << 20;
    auto db = MetaDb::Open("/db", mo);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    created = true;
    for (auto& [k, v] : synced) {
      auto got = (*db)->Get(k);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ASSERT_TRUE(got->has_value()) << "lost synced key " << k;
      if (**got != v) {
        ASSERT_TRUE(maybe[k].contains(**got)) << k << " has a value never written: " << **got;
      }
      v = **got;  // what survived a recovery is durable from now on
      ++checked;
    }
    maybe.clear();
    // Write, sync some, flush and compact; the power goes at a random write.
    std::atomic<uint64_t> writes{0};
    const uint64_t cut = 50 + rng() % 400;
    dev.SetFaultHook([&](const IoOp& op) {
      if (op.kind == IoOp::Kind::kWrite && ++writes > cut) return Status::Error(EIO, "power cut");
      return Status::Ok();
    });
    std::map<std::string, std::string> pending;
    for (int i = 0; i < 4000; ++i) {
      std::string key = fmt::format("k{:06}", rng() % 20000);
      std::string value = fmt::format("r{}-{}-{}", round, i, std::string(rng() % 300, 'v'));
      rocksdb::WriteBatch b;
      b.Put(key, value);
      bool sync = i % 50 == 0;
      maybe[key].insert(value);
      if (!(*db)->Write(&b, sync).ok()) break;
      pending[key] = value;
      if (sync) {
        // Everything written so far is durable now.
        for (auto& [k, v] : pending) {
          synced[k] = v;
          maybe[k].clear();
        }
        pending.clear();
      }
      if (i % 1000 == 999) {
        if (!(*db)->Flush().ok()) break;
        (*db)->raw()->CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr).PermitUncheckedError();
      }
    }
    db->reset();
    fs->reset();
    dev.SetFaultHook(nullptr);
    // Odd rounds: the unsynced writes reached the media in any order.
    if (round % 2 == 0) {
      dev.DropUnsynced();
    } else {
      dev.PowerCut(rng());
    }
    // Every third round, a bit of one copy of the journal flips as well.
    if (round % 3 == 1) {
      JournalLayout j = ReadJournalLayout(&dev, layout);
      const int copy = static_cast<int>(rng() % 2);
      ASSERT_FALSE(j.copy[copy].empty());
      FlipBit(&dev, JournalByte(j.copy[copy], rng() % j.bytes), static_cast<int>(rng() % 8));
    }
  }
  std::printf("rocksdb power cuts: %d rounds, %llu synced keys verified, %llu journal records repaired from a copy\n",
              rounds, static_cast<unsigned long long>(checked), static_cast<unsigned long long>(copies_damaged));
  EXPECT_GT(checked, 1000u);
  if (rounds >= 30) {
    EXPECT_GT(copies_damaged, 0u);
  }
}

TEST(MetaFs, RocksDbLosesNothingSyncedAcrossPowerCuts) {
  MemDevice dev(256 << 20);
  const MetaFsLayout layout = Layout(dev.size());
  ASSERT_TRUE(MetaFs::Format(&dev, layout).ok());
  RocksDbPowerCuts(dev, layout, 60, [](MetaFs*) {});
}

// ---------------------------------------------------------------- a state larger than a segment

// 64 KiB segments: a file extent, and a journal extent, is 64 KiB at most.
MetaFsLayout SmallSegmentLayout(uint64_t device_size) {
  MetaFsLayout l = Layout(device_size);
  l.segment_size = 64 << 10;
  l.segment_count = (device_size - l.data_offset) / l.segment_size;
  return l;
}

// Files whose state (an extent record per 64 KiB, a checksum per 4 KiB
// block) takes about 1.6 KiB per MiB: 60 MiB of them need a state larger
// than a 64 KiB segment.
constexpr int kBallastFiles = 30;
constexpr uint64_t kBallastBytes = 2 << 20;

// Not a RocksDB file name: RocksDB deletes those it does not know.
std::string BallastName(int i) { return fmt::format("ballast-{:02}", i); }

std::string BallastData(int i) {
  std::string out(kBallastBytes, '\0');
  std::mt19937_64 rng(1000 + i);
  for (size_t at = 0; at < out.size(); at += 8) StoreLE64(out.data() + at, rng());
  return out;
}

void WriteBallast(MetaFs* fs) {
  for (int i = 0; i < kBallastFiles; ++i) {
    auto f = fs->Create(BallastName(i));
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    const std::string data = BallastData(i);
    for (size_t at = 0; at < data.size(); at += 256 << 10) {
      ASSERT_TRUE((*f)->Append(B(data.substr(at, 256 << 10))).ok());
    }
    ASSERT_TRUE((*f)->Sync().ok());
  }
}

void ExpectBallast(MetaFs* fs) {
  for (int i = 0; i < kBallastFiles; ++i) {
    EXPECT_TRUE(ReadAll(fs, BallastName(i)) == BallastData(i)) << BallastName(i) << " differs";
  }
}

// A volume whose journal state spans several segments, just written by a
// read-write mount's new generation.
void WriteLargeState(MemDevice* dev, const MetaFsLayout& layout) {
  {
    auto fs = MetaFs::Format(dev, layout);
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    WriteBallast(fs->get());
  }
  auto fs = MetaFs::Mount(dev, layout);
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  ASSERT_GT((*fs)->Usage().journal_bytes, layout.segment_size) << "the state should span several segments";
  ASSERT_GE((*fs)->JournalExtents().size(), 2u);
}

TEST(MetaFs, StateLargerThanASegmentSurvivesRemounts) {
  MemDevice dev(192 << 20);
  const MetaFsLayout layout = SmallSegmentLayout(dev.size());
  ASSERT_NO_FATAL_FAILURE(WriteLargeState(&dev, layout));
  for (int mount = 0; mount < 3; ++mount) {
    auto fs = MetaFs::Mount(&dev, layout);
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    ExpectBallast(fs->get());
    EXPECT_EQ((*fs)->journal_copies().damaged(), 0u);
    const auto journal = (*fs)->JournalExtents();
    const auto mirror = (*fs)->JournalMirrorExtents();
    ASSERT_EQ(journal.size(), mirror.size());
    auto segment = [&](uint64_t offset) { return (offset - layout.data_offset) / layout.segment_size; };
    for (size_t i = 0; i < journal.size(); ++i) {
      EXPECT_EQ(journal[i].length, mirror[i].length);
      EXPECT_NE(segment(journal[i].offset), segment(mirror[i].offset)) << "extent " << i;
    }
  }
}

// The power going at any write of a new generation's state (the unsynced
// writes lost, or landing in any order) leaves the previous generation, or
// the new one whole.
TEST(MetaFs, StateLargerThanASegmentSurvivesAPowerCutWhileWritten) {
  MemDevice dev(192 << 20);
  const MetaFsLayout layout = SmallSegmentLayout(dev.size());
  ASSERT_NO_FATAL_FAILURE(WriteLargeState(&dev, layout));
  std::mt19937_64 rng(5);
  bool mounted = false;
  for (uint64_t cut = 0; cut < 100 && !mounted; ++cut) {
    SCOPED_TRACE(fmt::format("power cut after {} writes", cut));
    std::atomic<uint64_t> writes{0};
    dev.SetFaultHook([&](const IoOp& op) {
      if (op.kind == IoOp::Kind::kWrite && ++writes > cut) return Status::Error(EIO, "power cut");
      return Status::Ok();
    });
    mounted = MetaFs::Mount(&dev, layout).ok();
    dev.SetFaultHook(nullptr);
    if (cut % 2 == 0) {
      dev.DropUnsynced();
    } else {
      dev.PowerCut(rng());
    }
    auto ro = MetaFs::MountReadOnly(&dev, layout);
    ASSERT_TRUE(ro.ok()) << ro.status().ToString();
    ExpectBallast(ro->get());
  }
  EXPECT_TRUE(mounted) << "no mount got through";
}

// A flipped bit in either copy of the state, in its first extent or a
// chained one: nothing is lost, and a read-write mount rewrites both copies.
TEST(MetaFs, FlipInOneCopyOfAStateLargerThanASegmentLosesNothing) {
  for (int copy = 0; copy < 2; ++copy) {
    for (bool chained : {false, true}) {
      SCOPED_TRACE(fmt::format("copy {}, {} extent", copy, chained ? "a chained" : "the first"));
      MemDevice dev(192 << 20);
      const MetaFsLayout layout = SmallSegmentLayout(dev.size());
      ASSERT_NO_FATAL_FAILURE(WriteLargeState(&dev, layout));
      JournalLayout j = ReadJournalLayout(&dev, layout);
      ASSERT_GE(j.copy[copy].size(), 2u);
      // Byte 10 of an extent is in its first record (its generation).
      FlipBit(&dev, j.copy[copy][chained ? 1 : 0].offset + 10, 3);
      {
        auto ro = MetaFs::MountReadOnly(&dev, layout);
        ASSERT_TRUE(ro.ok()) << ro.status().ToString();
        ExpectBallast(ro->get());
        EXPECT_EQ((*ro)->journal_copies().damaged(), 1u);
      }
      {
        auto rw = MetaFs::Mount(&dev, layout);
        ASSERT_TRUE(rw.ok()) << rw.status().ToString();
        EXPECT_TRUE((*rw)->journal_copies().rewritten);
      }
      auto again = MetaFs::MountReadOnly(&dev, layout);
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      ExpectBallast(again->get());
      EXPECT_EQ((*again)->journal_copies().damaged(), 0u);
    }
  }
}

// RocksDB beside files whose state spans several segments: every mount
// writes that state again, and power cuts and flips (in a copy of the
// journal, the state included) lose nothing synced.
TEST(MetaFs, RocksDbBesideAStateLargerThanASegmentLosesNothingSyncedAcrossPowerCuts) {
  MemDevice dev(320 << 20);
  const MetaFsLayout layout = SmallSegmentLayout(dev.size());
  ASSERT_NO_FATAL_FAILURE(WriteLargeState(&dev, layout));
  RocksDbPowerCuts(dev, layout, 30, [&](MetaFs* fs) {
    ExpectBallast(fs);
    EXPECT_GT(fs->Usage().journal_bytes, layout.segment_size);
  });
}

}  // namespace
}  // namespace qcfs
