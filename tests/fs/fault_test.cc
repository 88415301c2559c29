// Faults from and in the device, under a whole volume: I/O errors and a
// full device at random, bit flips in everything the volume stores, a
// truncated device. Each gives an error and never wrong data; what is intact
// stays readable; qcfs check names the damaged files; repair leaves the
// volume consistent.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "qcfs/check/check.h"
#include "qcfs/fs/volume.h"
#include "qcfs/io/mem_device.h"
#include "qcfs/meta/metafs.h"
#include "qcfs/meta/schema.h"
#include "qcfs/store/internal/record.h"
#include "tests/testutil/env.h"
#include "tests/testutil/mem_volume.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/volume_fixture.h"

namespace qcfs {
namespace {

using testing::Bytes;
using testing::EnvOr;
using testing::LentDevice;
using testing::ReadWhole;
using testing::Resolve;

constexpr uint32_t kChunk = 16 << 10;

std::string Content(std::mt19937_64& rng, size_t size, bool text) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = text ? static_cast<char>('a' + (i * 7 + i / 13) % 26) : static_cast<char>(rng());
  return s;
}

// A volume holding large and small, compressible and random files (small
// ones end up packed together), closed cleanly.
class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MkfsOptions mk;
    mk.chunk_size = kChunk;
    ASSERT_TRUE(MkfsOn(&dev_, mk).ok());
    auto v = Open();
    std::mt19937_64 rng(11);
    ASSERT_TRUE(v->Mkdir(kRootIno, "docs", 0755, Caller{}).ok());
    for (int i = 0; i < 24; ++i) {
      std::string path = fmt::format("{}f{}", i % 2 ? "docs/" : "", i);
      size_t size = i < 8 ? 60'000 + rng() % 200'000 : 1 + rng() % 6000;
      Put(v.get(), path, Content(rng, size, i % 3 == 0));
    }
    ASSERT_TRUE(v->Close().ok());
  }

  std::unique_ptr<Volume> Open(bool read_only = false) {
    VolumeOptions vo;
    vo.read_only = read_only;
    vo.cache_bytes = 16ull << 20;
    vo.store.read_cache_bytes = 0;
    auto v = Volume::OpenOn(std::make_unique<LentDevice>(&dev_), vo);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? std::move(*v) : nullptr;
  }

  void Put(Volume* v, const std::string& path, const std::string& data) {
    size_t slash = path.rfind('/');
    uint64_t dir = kRootIno;
    if (slash != std::string::npos) dir = Resolve(v, path.substr(0, slash))->ino;
    std::string leaf = slash == std::string::npos ? path : path.substr(slash + 1);
    auto c = v->Create(dir, leaf, 0644, O_WRONLY, Caller{});
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ASSERT_TRUE(v->Write(c->ino, 0, Bytes(data)).ok());
    ASSERT_TRUE(v->Release(c->ino).ok());
    files_[path] = data;
  }

  // Reads every file chunk by chunk: each piece is right or an error, never
  // wrong bytes. Returns the files with unreadable pieces.
  std::set<std::string> ReadEverything(Volume* v, int* errors = nullptr) {
    std::set<std::string> bad;
    for (const auto& [path, want] : files_) {
      auto a = Resolve(v, path);
      if (!a.ok()) {
        bad.insert(path);
        continue;
      }
      for (size_t off = 0; off < want.size(); off += kChunk) {
        std::string got(std::min<size_t>(kChunk, want.size() - off), '\0');
        auto n = v->Read(a->ino, off, std::span<std::byte>(reinterpret_cast<std::byte*>(got.data()), got.size()));
        if (!n.ok()) {
          EXPECT_TRUE(n.status().code() == EIO || n.status().code() == EUCLEAN) << path << ": " << n.status().ToString();
          bad.insert(path);
          if (errors) ++*errors;
          continue;
        }
        EXPECT_EQ(*n, got.size()) << path << " at " << off;
        EXPECT_TRUE(got.compare(0, *n, want, off, *n) == 0) << path << " at " << off << ": wrong bytes";
      }
    }
    return bad;
  }

  CheckReport Check(bool repair) {
    CheckOptions co;
    co.full = true;
    co.repair = repair;
    auto r = CheckVolumeOn(std::make_unique<LentDevice>(&dev_), co);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : CheckReport{};
  }

  static std::string Describe(const CheckReport& r) {
    std::string out;
    for (auto& f : r.findings) {
      out += f.kind + ": " + f.detail;
      for (auto& p : f.paths) out += " [" + p + "]";
      out += "\n";
    }
    return out;
  }

  // The index entry and device offset of the record holding chunk `index` of `path`.
  std::pair<schema::ChunkIndexRecord, uint64_t> Locate(const std::string& path, uint64_t index) {
    auto v = Open(true);
    auto a = Resolve(v.get(), path);
    auto e = v->db()->Get(schema::ExtentKey(a->ino, index));
    schema::ExtentRecord ext;
    EXPECT_TRUE(e.ok() && e->has_value() && schema::ExtentRecord::Decode(**e, &ext));
    auto c = v->db()->Get(schema::ChunkKey(ext.fp));
    schema::ChunkIndexRecord rec;
    EXPECT_TRUE(c.ok() && c->has_value() && schema::ChunkIndexRecord::Decode(**c, &rec));
    return {rec, v->superblock().SegmentOffset(rec.segment) + rec.offset};
  }

  void FlipBit(uint64_t offset, int bit) {
    std::byte b;
    dev_.Peek(offset, {&b, 1});
    b ^= std::byte(1u << (bit % 8));
    dev_.Poke(offset, {&b, 1});
  }

  MemDevice dev_{96ull << 20};
  std::map<std::string, std::string> files_;
};

TEST_F(FaultTest, ReadErrorsAreEioAndNeverWrongData) {
  auto v = Open();
  std::mt19937_64 rng(EnvOr("QCFS_FAULT_SEED", 3));
  uint64_t injected = 0;
  dev_.SetFaultHook([&](const IoOp& op) {
    if (op.kind == IoOp::Kind::kRead && rng() % 5 == 0) {
      ++injected;
      return Status::Error(EIO, "injected read error");
    }
    return Status::Ok();
  });
  int errors = 0;
  for (int pass = 0; pass < 3; ++pass) ReadEverything(v.get(), &errors);
  dev_.SetFaultHook(nullptr);
  EXPECT_GT(injected, 0u);
  EXPECT_GT(errors, 0);
  // Nothing was damaged: every byte reads back once the device behaves.
  EXPECT_TRUE(ReadEverything(v.get()).empty());
  ASSERT_TRUE(v->Close().ok());
  EXPECT_TRUE(Check(false).clean());
}

// Random write failures (I/O errors, then a full device): writers get the
// error, and whatever fsync confirmed is there after a remount. A failed
// metadata write stops metadata writes until the next mount (as ext4 goes
// read-only on a journal error): the test then remounts, as an operator
// would, and goes on.
TEST_F(FaultTest, WriteErrorsAndAFullDeviceLoseNothingConfirmed) {
  for (int code : {EIO, ENOSPC}) {
    SCOPED_TRACE(code == EIO ? "EIO" : "ENOSPC");
    auto v = Open();
    std::mt19937_64 rng(EnvOr("QCFS_FAULT_SEED", 5) + static_cast<uint64_t>(code));
    // The hook runs on the volume's threads too (background flushes): it
    // draws from its own generator, under a lock.
    std::mutex fault_mu;
    std::mt19937_64 fault_rng(rng());
    std::atomic<uint64_t> injected = 0;
    std::atomic<bool> faults = true;
    dev_.SetFaultHook([&](const IoOp& op) {
      std::lock_guard lock(fault_mu);
      if (faults && op.kind == IoOp::Kind::kWrite && fault_rng() % 40 == 0) {
        ++injected;
        return Status::Error(code, code == EIO ? "injected write error" : "injected: no space left on device");
      }
      return Status::Ok();
    });
    int confirmed = 0, failed = 0, remounts = 0;
    for (int i = 0; i < 150; ++i) {
      std::string path = fmt::format("w{}", rng() % 12);
      // Every tenth file is large enough to flush in several rounds, whose
      // writes and commits overlap.
      const size_t size = i % 10 == 0 ? 3'000'000 + rng() % 4'000'000 : 1 + rng() % 90'000;
      std::string data = Content(rng, size, rng() % 2 == 0);
      std::string tmp = fmt::format("tmp{}", i);
      auto c = v->Create(kRootIno, tmp, 0644, O_WRONLY, Caller{});
      bool ok = c.ok();
      if (ok) {
        ok = v->Write(c->ino, 0, Bytes(data)).ok() && v->Fsync(c->ino, false).ok();
        v->Release(c->ino).IgnoreError();
        ok = ok && v->Rename(kRootIno, tmp, kRootIno, path, 0).ok() && v->Fsync(kRootIno, false).ok();
      }
      if (ok) {
        files_[path] = data;
        ++confirmed;
        continue;
      }
      ++failed;
      files_.erase(path);  // old, new or gone: anything goes
      v->Unlink(kRootIno, tmp).IgnoreError();
      // Still taking metadata writes? If not, remount (without faults while
      // it replays) and go on.
      faults = false;
      bool writable = v->Mkdir(kRootIno, "probe", 0755, Caller{}).ok() && v->Rmdir(kRootIno, "probe").ok();
      if (!writable) {
        v->Close().IgnoreError();
        v = Open();
        ASSERT_TRUE(v);
        ++remounts;
        v->Rmdir(kRootIno, "probe").IgnoreError();
      }
      faults = true;
    }
    std::printf("%s: %d confirmed, %d failed, %llu faults injected, %d remounts\n", code == EIO ? "EIO" : "ENOSPC",
                confirmed, failed, static_cast<unsigned long long>(injected.load()), remounts);
    v->Close().IgnoreError();
    dev_.SetFaultHook(nullptr);
    EXPECT_GT(injected.load(), 0u);
    EXPECT_GT(failed, 0);
    EXPECT_GT(confirmed, 0);
    CheckReport r = Check(false);
    EXPECT_TRUE(r.clean()) << Describe(r);
    auto again = Open();
    ASSERT_TRUE(again);
    EXPECT_TRUE(ReadEverything(again.get()).empty());
    ASSERT_TRUE(again->Close().ok());
  }
}

// One flipped bit in a chunk's payload, a record header, a pack's member
// table or a segment header.
TEST_F(FaultTest, BitFlipsInStoredDataAreEioAndCheckFindings) {
  // f0 is large (a record of its own); f9 is small (a member of a pack).
  auto [big, big_at] = Locate("f0", 1);
  auto [small, small_at] = Locate("docs/f9", 0);
  ASSERT_FALSE(big.packed());
  ASSERT_TRUE(small.packed());
  std::mt19937_64 rng(EnvOr("QCFS_FAULT_SEED", 7));
  const uint64_t payload = internal::kRecordHeaderSize + 8 + rng() % (big.record_len - internal::kRecordHeaderSize - 8);
  struct Flip {
    std::string what;
    uint64_t at;
    std::string holder;  // the file that must see the damage
  };
  const std::vector<Flip> flips = {
      {"payload", big_at + payload, "f0"},
      {"record header", big_at + rng() % internal::kRecordHeaderSize, "f0"},
      {"pack member table", small_at + internal::kRecordHeaderSize + rng() % 16, "docs/f9"},
  };
  for (const auto& [what, at, holder] : flips) {
    SCOPED_TRACE(what);
    std::vector<std::byte> saved(8);
    dev_.Peek(at, saved);
    FlipBit(at, static_cast<int>(rng() % 8));
    {
      auto v = Open(true);
      std::set<std::string> bad = ReadEverything(v.get());
      EXPECT_TRUE(bad.count(holder)) << "the damaged chunk was read without an error";
    }
    CheckReport found = Check(false);
    bool named = false;
    for (auto& f : found.findings) {
      if (f.kind != "damaged-chunk") continue;
      for (auto& p : f.paths) named |= p == "/" + holder;
    }
    EXPECT_TRUE(named) << Describe(found);
    Check(true);
    CheckReport after = Check(false);
    for (auto& f : after.findings) EXPECT_EQ(f.kind, "damaged-chunk") << "repair left: " << Describe(after);
    dev_.Poke(at, saved);  // undo, for the next round
    EXPECT_TRUE(Check(false).clean());
  }
  // A segment header: nothing is lost; check reports it and repair rewrites it.
  auto v = Open(true);
  const uint64_t header = v->superblock().SegmentOffset(big.segment) + rng() % 56;
  v.reset();
  FlipBit(header, 3);
  {
    auto r = Open(true);
    EXPECT_TRUE(ReadEverything(r.get()).empty());
  }
  CheckReport found = Check(false);
  ASSERT_EQ(found.findings.size(), 1u) << Describe(found);
  EXPECT_EQ(found.findings[0].kind, "segment-header");
  Check(true);
  EXPECT_TRUE(Check(false).clean());
}

// Flips in the metadata (RocksDB's files, the journal, the roots): the
// volume refuses to open with a clear error, or opens and every read is
// right or an error. Never different bytes. A flip in either copy of the
// journal or in one root never refuses it: the other copy holds the bytes.
TEST_F(FaultTest, BitFlipsInMetadataNeverGiveWrongData) {
  const uint64_t rounds = EnvOr("QCFS_FAULT_ROUNDS", 24);
  std::mt19937_64 rng(EnvOr("QCFS_FAULT_SEED", 13));
  // The bytes in use: each file's up to its size (both copies), the
  // journal's records (both copies), the two roots. Every one of them has
  // a second copy: no single flip may refuse the mount.
  std::vector<MetaFs::Extent> extents;
  std::vector<std::string> owners;
  {
    auto v = Open(true);
    for (const auto& [suffix, files] : {std::pair{"", v->space()->FileExtents()},
                                        std::pair{" (mirror)", v->space()->FileMirrorExtents()}}) {
      for (auto& [name, ex] : files) {
        uint64_t left = *v->space()->FileSize(name);
        for (const auto& e : ex) {
          if (left == 0) break;
          ASSERT_NE(e.length, 0u) << name << " has an extent with no mirror";
          owners.push_back(name + suffix);
          extents.push_back({e.offset, std::min(left, e.length)});
          left -= std::min(left, e.length);
        }
      }
    }
    for (const auto& [owner, copy] : {std::pair{"<journal>", v->space()->JournalExtents()},
                                      std::pair{"<journal mirror>", v->space()->JournalMirrorExtents()}}) {
      uint64_t journal = v->space()->Usage().journal_bytes;
      for (const auto& e : copy) {
        if (journal == 0) break;
        owners.push_back(owner);
        extents.push_back({e.offset, std::min(journal, e.length)});
        journal -= std::min(journal, e.length);
      }
    }
    owners.push_back("<roots>");
    extents.push_back({Superblock::kMetaRootOffset, 8192});
  }
  ASSERT_FALSE(extents.empty());
  uint64_t refused = 0, opened = 0, reads_failed = 0, reported = 0;
  for (uint64_t i = 0; i < rounds; ++i) {
    const size_t pick = rng() % extents.size();
    const MetaFs::Extent& e = extents[pick];
    SCOPED_TRACE("a bit of " + owners[pick]);
    const uint64_t at = e.offset + rng() % e.length;
    std::vector<std::byte> saved(1);
    dev_.Peek(at, saved);
    FlipBit(at, static_cast<int>(rng() % 8));
    VolumeOptions vo;
    vo.read_only = true;
    vo.store.read_cache_bytes = 0;
    auto v = Volume::OpenOn(std::make_unique<LentDevice>(&dev_), vo);
    if (!v.ok()) {
      ++refused;
      ADD_FAILURE() << "one damaged copy refused the mount: " << v.status().ToString();
    } else {
      ++opened;
      EXPECT_TRUE(ReadEverything(v->get()).empty()) << "one damaged copy lost file data";
      reads_failed += ReadEverything(v->get()).size();
      v->reset();
      CheckOptions co;
      auto r = CheckVolumeOn(std::make_unique<LentDevice>(&dev_), co);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      // A flip in a file's block is found by the scrub (a flip in a journal
      // record or a root only where it lands in bytes that are read).
      bool copy_found = false;
      for (const auto& f : r->findings) {
        copy_found |= f.kind == "meta-copy" || f.kind == "journal-copy";
        EXPECT_TRUE(f.kind == "meta-copy" || f.kind == "journal-copy") << f.kind << ": " << f.detail;
      }
      const bool in_file = !owners[pick].starts_with("<");
      if (in_file) {
        EXPECT_TRUE(copy_found) << "check did not report the damaged copy";
      }
      reported += copy_found;
    }
    dev_.Poke(at, saved);
  }
  std::printf("metadata flips: %llu rounds, %llu refused to open, %llu opened (%llu files unreadable), %llu reported "
              "by check\n",
              static_cast<unsigned long long>(rounds), static_cast<unsigned long long>(refused),
              static_cast<unsigned long long>(opened), static_cast<unsigned long long>(reads_failed),
              static_cast<unsigned long long>(reported));
  EXPECT_TRUE(Check(false).clean());
}

// Damage inside the journal's synced records, in one copy: the mount reads
// the other and loses nothing; check reports it and repair rewrites both.
TEST_F(FaultTest, JournalDamagedInOneCopyLosesNothing) {
  for (int copy = 0; copy < 2; ++copy) {
    SCOPED_TRACE(copy == 0 ? "primary" : "mirror");
    MetaFs::Extent journal{};
    uint64_t journal_bytes = 0;
    {
      auto v = Open(true);
      journal = copy == 0 ? v->space()->JournalExtents().front() : v->space()->JournalMirrorExtents().front();
      journal_bytes = v->space()->Usage().journal_bytes;
    }
    ASSERT_GT(journal_bytes, 64u);
    FlipBit(journal.offset + std::min(journal.length, journal_bytes) * 3 / 4, 3);
    {
      auto v = Open(true);
      ASSERT_TRUE(v);
      EXPECT_TRUE(ReadEverything(v.get()).empty());
      EXPECT_EQ(v->space()->journal_copies().damaged(), 1u);
    }
    CheckReport found = Check(false);
    ASSERT_EQ(found.findings.size(), 1u) << Describe(found);
    EXPECT_EQ(found.findings[0].kind, "journal-copy");
    CheckReport repaired = Check(true);
    EXPECT_EQ(repaired.unrepaired(), 0u) << Describe(repaired);
    EXPECT_TRUE(Check(false).clean()) << Describe(Check(false));
  }
}

// Damage inside the journal's synced records, the same record in both
// copies: the mount refuses (rolling back silently would lose synced
// changes) and says what to run; check --repair rolls back to the last
// intact record and leaves a consistent volume whose reads are right or
// errors.
TEST_F(FaultTest, JournalDamagedInBothCopiesIsRefusedUntilRepairRollsItBack) {
  std::vector<MetaFs::Extent> copies;
  uint64_t journal_bytes = 0;
  {
    auto v = Open(true);
    copies = {v->space()->JournalExtents().front(), v->space()->JournalMirrorExtents().front()};
    journal_bytes = v->space()->Usage().journal_bytes;
  }
  ASSERT_GT(journal_bytes, 64u);
  for (const MetaFs::Extent& journal : copies) {
    FlipBit(journal.offset + std::min(journal.length, journal_bytes) * 3 / 4, 3);
  }
  VolumeOptions vo;
  vo.read_only = true;
  auto refused = Volume::OpenOn(std::make_unique<LentDevice>(&dev_), vo);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), EUCLEAN) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("both its copies"), std::string::npos) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("qcfs check --repair"), std::string::npos)
      << refused.status().ToString();

  CheckReport repaired = Check(true);
  EXPECT_FALSE(repaired.clean());
  std::printf("repair of a damaged journal:\n%s", Describe(repaired).c_str());
  EXPECT_TRUE(Check(false).clean()) << Describe(Check(false));
  auto v = Open();
  ASSERT_TRUE(v);
  ReadEverything(v.get());  // right or errors
  ASSERT_TRUE(v->Close().ok());
}

TEST_F(FaultTest, DamagedSuperblocks) {
  FlipBit(100, 1);  // the primary: the secondary takes over
  {
    auto v = Open(true);
    ASSERT_TRUE(v);
    EXPECT_TRUE(ReadEverything(v.get()).empty());
  }
  FlipBit(Superblock::kSecondaryOffset + 100, 1);  // both
  VolumeOptions vo;
  vo.read_only = true;
  auto v = Volume::OpenOn(std::make_unique<LentDevice>(&dev_), vo);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("superblock"), std::string::npos) << v.status().ToString();
}

TEST(Faults, TruncatedImageIsRefused) {
  testing::TempDir dir;
  const std::string image = dir.Join("vol.img");
  MkfsOptions mk;
  mk.size = 64ull << 20;
  ASSERT_TRUE(Mkfs(image, mk).ok());
  ASSERT_EQ(::truncate(image.c_str(), 40ll << 20), 0);
  auto v = Volume::Open(image, VolumeOptions{});
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("truncated"), std::string::npos) << v.status().ToString();
  ASSERT_EQ(::truncate(image.c_str(), 2048), 0);
  v = Volume::Open(image, VolumeOptions{});
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().ToString().find("not a QCFS volume"), std::string::npos) << v.status().ToString();
}

}  // namespace
}  // namespace qcfs
