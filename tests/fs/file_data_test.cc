// File data semantics of the Volume: buffering, flushing, holes, truncation,
// dedup and compression accounting, space limits.
#include <fcntl.h>
#include <linux/falloc.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "qcfs/fs/internal/inode.h"
#include "qcfs/fs/volume.h"
#include "qcfs/meta/meta_db.h"
#include "qcfs/meta/schema.h"
#include "tests/testutil/volume_fixture.h"

namespace qcfs {
namespace {

using testing::Bytes;
using testing::RandomBytes;
using testing::TestVolume;

const Caller kRoot{0, 0};

TEST(FileData, ReadsItsOwnWritesBeforeAndAfterFlush) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "f", 0644, O_RDWR, kRoot);
  std::string data = RandomBytes(300000, 1);
  v.WriteAt(f.ino, 0, data);
  EXPECT_EQ(v.ReadAll(f.ino), data);
  ASSERT_TRUE(v->Fsync(f.ino, false).ok());
  EXPECT_EQ(v.ReadAll(f.ino), data);
  ASSERT_TRUE(v->Release(f.ino).ok());
  v.Reopen();
  EXPECT_EQ(v.ReadAll(f.ino), data);
}

// A chunk buffer holds only what was written up to its highest byte; the
// rest reads as zeros, whatever its memory holds.
TEST(ChunkBuf, HoldsWhatWasWrittenAndReadsZerosBeyond) {
  internal::ChunkBuf buf(65536);
  EXPECT_EQ(buf.end(), 0u);
  std::string out(65536, 'x');
  auto out_bytes = std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size());
  buf.CopyOut(0, out_bytes);
  EXPECT_EQ(out, std::string(65536, '\0'));

  buf.Write(100, Bytes(std::string(50, 'a')));
  EXPECT_EQ(buf.end(), 150u);
  buf.Write(1000, Bytes(std::string(10, 'b')));  // the gap becomes zeros
  EXPECT_EQ(buf.end(), 1010u);
  std::string want(65536, '\0');
  want.replace(100, 50, std::string(50, 'a'));
  want.replace(1000, 10, std::string(10, 'b'));
  out.assign(65536, 'x');
  buf.CopyOut(0, out_bytes);
  EXPECT_EQ(out, want);
  EXPECT_EQ(buf.held().size(), 1010u);

  buf.Zero(120, 130);  // inside: zeroed in place
  want.replace(120, 10, std::string(10, '\0'));
  buf.Zero(1005, 65536);  // past the last byte: the buffer just holds less
  EXPECT_EQ(buf.end(), 1005u);
  want.replace(1005, 5, std::string(5, '\0'));
  buf.Zero(2000, 3000);  // already zero
  EXPECT_EQ(buf.end(), 1005u);
  // Writing past the end again does not bring back what was dropped.
  buf.Write(1008, Bytes(std::string(1, 'c')));
  want[1008] = 'c';
  out.assign(65536, 'x');
  buf.CopyOut(0, out_bytes);
  EXPECT_EQ(out, want);
  std::string part(20, 'x');
  buf.CopyOut(1000, std::span<std::byte>(reinterpret_cast<std::byte*>(part.data()), part.size()));
  EXPECT_EQ(part, want.substr(1000, 20));
}

// Small writes with gaps, truncation into written bytes, holes punched in
// a buffer, and growth past them: every byte reads as a file would, before
// and after a flush and a remount.
TEST(FileData, SparseWritesIntoNewBuffersReadAsZerosBetween) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "f", 0644, O_RDWR, kRoot);
  std::string want;
  auto write = [&](uint64_t off, const std::string& d) {
    v.WriteAt(f.ino, off, d);
    if (want.size() < off + d.size()) want.resize(off + d.size(), '\0');
    want.replace(off, d.size(), d);
  };
  write(1000, RandomBytes(100, 3));
  write(30000, RandomBytes(10, 4));   // same chunk, a gap after the last byte
  write(70000, RandomBytes(5000, 5)); // the next chunk, starting mid-way
  EXPECT_EQ(v.ReadAll(f.ino), want);
  SetAttrRequest shrink;
  shrink.size = 1050;  // into the first write
  ASSERT_TRUE(v->SetAttr(f.ino, shrink).ok());
  want.resize(1050);
  write(40000, "z");  // the bytes between 1050 and 40000 are zeros, not old data
  EXPECT_EQ(v.ReadAll(f.ino), want);
  ASSERT_TRUE(v->Fallocate(f.ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1010, 20).ok());
  want.replace(1010, 20, std::string(20, '\0'));
  EXPECT_EQ(v.ReadAll(f.ino), want);
  ASSERT_TRUE(v->Fsync(f.ino, false).ok());
  EXPECT_EQ(v.ReadAll(f.ino), want);
  write(40010, "after the flush");  // a buffer made from the stored chunk
  EXPECT_EQ(v.ReadAll(f.ino), want);
  ASSERT_TRUE(v->Release(f.ino).ok());
  v.Reopen();
  EXPECT_EQ(v.ReadAll(f.ino), want);
}

// A small write into a stored chunk reads it without the inode's lock; if
// the chunk is rewritten and committed meanwhile, again and again, the
// write still merges into what is stored now, never into what it read.
TEST(FileData, PartialWriteMergesIntoTheChunkAsItIsNowWhateverChangedMeanwhile) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "f", 0644, O_RDWR, kRoot);
  v.WriteAt(f.ino, 0, RandomBytes(65536 * 2, 20));
  ASSERT_TRUE(v->Fsync(f.ino, false).ok());
  std::string latest;
  int changes = 0;
  v->SetModifyHookForTesting([&] {
    if (changes >= 12) return;
    ++changes;
    latest = RandomBytes(65536, 100 + changes);  // chunk 0 rewritten whole and committed
    v.WriteAt(f.ino, 0, latest);
    ASSERT_TRUE(v->Fsync(f.ino, false).ok());
  });
  v.WriteAt(f.ino, 100, "merged");
  v->SetModifyHookForTesting(nullptr);
  ASSERT_GE(changes, 8);
  std::string want = latest;
  want.replace(100, 6, "merged");
  EXPECT_EQ(v.ReadAll(f.ino).substr(0, 65536), want);
  ASSERT_TRUE(v->Release(f.ino).ok());
  v.Reopen();
  EXPECT_EQ(v.ReadAll(f.ino).substr(0, 65536), want);
}

// A flush makes a file's size durable only as far as its data is: a chunk
// written beyond the end while a flush runs (left for the next flush) is not
// covered, so a crash in between gives a shorter file, never zeros. Checked
// before every commit once that chunk exists: the stored size reaches into
// it only once its extent is stored.
TEST(FileData, AFlushMakesNoSizeDurableBeyondAChunkItLeavesBehind) {
  VolumeOptions options;
  options.cache_bytes = 8 << 20;  // flush rounds of 1 MiB
  TestVolume v(256ull << 20, {}, options);
  auto f = *v->Create(kRootIno, "f", 0644, O_RDWR, kRoot);
  const uint64_t chunk = v->superblock().chunk_size;
  const std::string data = RandomBytes(56 * chunk, 30);  // four rounds
  // Two new chunks past a hole: the first buffer made after a flush began
  // may still join it (it takes buffers numbered up to the next number to
  // hand out), the second may not.
  const std::string late = RandomBytes(chunk + chunk / 2, 31);
  const uint64_t late_at = data.size() + chunk;
  const uint64_t left_at = late_at + chunk;
  bool written = false;
  int checked = 0;
  v->SetCommitHookForTesting([&] {
    if (!written) {
      // The first round commits; the rounds after it are prepared later.
      written = true;
      v.WriteAt(f.ino, late_at, late);
      return;
    }
    auto rec = v->db()->Get(schema::InodeKey(f.ino));
    ASSERT_TRUE(rec.ok() && rec->has_value());
    schema::InodeRecord r;
    ASSERT_TRUE(schema::InodeRecord::Decode(**rec, &r));
    auto extent = v->db()->Get(schema::ExtentKey(f.ino, left_at / chunk));
    ASSERT_TRUE(extent.ok());
    if (!extent->has_value()) {
      EXPECT_LE(r.size, left_at) << "the stored size covers a chunk that is not stored";
    }
    ++checked;
  });
  v.WriteAt(f.ino, 0, data);
  ASSERT_TRUE(v->Fsync(f.ino, false).ok());
  ASSERT_TRUE(v->Fsync(f.ino, false).ok());  // the late chunk, if the first left it
  v->SetCommitHookForTesting(nullptr);
  ASSERT_TRUE(written);
  EXPECT_GE(checked, 1);
  std::string want = data + std::string(chunk, '\0') + late;
  EXPECT_EQ(v.ReadAll(f.ino), want);
  ASSERT_TRUE(v->Release(f.ino).ok());
  v.Close();
  v.Open();
  EXPECT_EQ(v.ReadAll(f.ino), want);
}

TEST(FileData, PartialOverwriteOfAStoredChunk) {
  TestVolume v;
  std::string data = RandomBytes(200000, 2);
  uint64_t f = v.CreateFile(kRootIno, "f", data);
  ASSERT_TRUE(v->Sync().ok());
  ASSERT_TRUE(v->Open(f, O_RDWR).ok());
  v.WriteAt(f, 65530, "XYZXYZXYZXYZ");  // straddles two chunks
  data.replace(65530, 12, "XYZXYZXYZXYZ");
  EXPECT_EQ(v.ReadAll(f), data);
  ASSERT_TRUE(v->Release(f).ok());
  v.Reopen();
  EXPECT_EQ(v.ReadAll(f), data);
}

// Reads of an open file remember its chunks' fingerprints; every change
// to its stored chunks must make them look again.
TEST(FileData, ReadsSeeEveryChangeToStoredChunksOfAnOpenFile) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "f", 0644, O_RDWR, kRoot);
  std::string data = RandomBytes(4 * 65536, 3);
  v.WriteAt(f.ino, 0, data);
  ASSERT_TRUE(v->Fsync(f.ino, false).ok());
  EXPECT_EQ(v.ReadAll(f.ino), data);  // fingerprints remembered
  // A flushed overwrite.
  std::string other = RandomBytes(65536, 4);
  v.WriteAt(f.ino, 65536, other);
  ASSERT_TRUE(v->Fsync(f.ino, false).ok());
  data.replace(65536, 65536, other);
  EXPECT_EQ(v.ReadAll(f.ino), data);
  // A punched hole.
  ASSERT_TRUE(v->Fallocate(f.ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 65536).ok());
  data.replace(0, 65536, std::string(65536, '\0'));
  EXPECT_EQ(v.ReadAll(f.ino), data);
  // Truncation down and back up.
  SetAttrRequest shrink;
  shrink.size = 2 * 65536 + 100;
  ASSERT_TRUE(v->SetAttr(f.ino, shrink).ok());
  SetAttrRequest grow;
  grow.size = data.size();
  ASSERT_TRUE(v->SetAttr(f.ino, grow).ok());
  data.replace(2 * 65536 + 100, std::string::npos, std::string(data.size() - 2 * 65536 - 100, '\0'));
  EXPECT_EQ(v.ReadAll(f.ino), data);
  ASSERT_TRUE(v->Release(f.ino).ok());
}

TEST(FileData, HolesReadAsZerosAndTakeNoSpace) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "sparse", 0644, O_RDWR, kRoot);
  v.WriteAt(f.ino, 5ull << 30, "end");  // beyond 4 GiB
  ASSERT_TRUE(v->Fsync(f.ino, false).ok());
  auto a = *v->GetAttr(f.ino);
  EXPECT_EQ(a.size, (5ull << 30) + 3);
  EXPECT_LE(a.blocks, 128u);
  std::string buf(8, 'x');
  auto n = v->Read(f.ino, (5ull << 30) - 5, std::span<std::byte>(reinterpret_cast<std::byte*>(buf.data()), 8));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(buf, std::string(5, '\0') + "end");
  EXPECT_EQ(v->store()->Usage().stats.chunks, 1u);
  ASSERT_TRUE(v->Release(f.ino).ok());
}

TEST(FileData, TruncateZeroesWhatLiesBeyondTheEnd) {
  TestVolume v;
  std::string data = RandomBytes(100000, 3);
  uint64_t f = v.CreateFile(kRootIno, "f", data);
  ASSERT_TRUE(v->Sync().ok());
  SetAttrRequest shrink;
  shrink.size = 70000;
  ASSERT_TRUE(v->SetAttr(f, shrink).ok());
  SetAttrRequest grow;
  grow.size = 100000;
  ASSERT_TRUE(v->SetAttr(f, grow).ok());
  std::string expect = data.substr(0, 70000) + std::string(30000, '\0');
  EXPECT_EQ(v.ReadAll(f), expect);
  v.Reopen();
  EXPECT_EQ(v.ReadAll(f), expect);
  SetAttrRequest zero;
  zero.size = 0;
  ASSERT_TRUE(v->SetAttr(f, zero).ok());
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_EQ(v->store()->Usage().stats.chunks, 0u);
}

TEST(FileData, TruncateOfBufferedData) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "f", 0644, O_RDWR, kRoot);
  v.WriteAt(f.ino, 0, std::string(10000, 'a'));
  SetAttrRequest shrink;
  shrink.size = 10;
  ASSERT_TRUE(v->SetAttr(f.ino, shrink).ok());
  v.WriteAt(f.ino, 20, "b");
  EXPECT_EQ(v.ReadAll(f.ino), std::string(10, 'a') + std::string(10, '\0') + "b");
  ASSERT_TRUE(v->Release(f.ino).ok());
}

TEST(FileData, PunchHoleFreesChunksAndZeroesTheRange) {
  TestVolume v;
  std::string data = RandomBytes(640 << 10, 4);  // ten chunks
  uint64_t f = v.CreateFile(kRootIno, "f", data);
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_EQ(v->store()->Usage().stats.chunks, 10u);
  ASSERT_TRUE(v->Fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100000, 300000).ok());
  ASSERT_TRUE(v->Sync().ok());
  data.replace(100000, 300000, std::string(300000, '\0'));
  EXPECT_EQ(v.ReadAll(f), data);
  EXPECT_EQ(v->GetAttr(f)->size, 640u << 10);
  EXPECT_LT(v->store()->Usage().stats.chunks, 10u);
  v.Reopen();
  EXPECT_EQ(v.ReadAll(f), data);
}

TEST(FileData, FallocateExtendsOrKeepsSize) {
  TestVolume v;
  uint64_t f = v.CreateFile(kRootIno, "f", "abc");
  ASSERT_TRUE(v->Fallocate(f, 0, 0, 1 << 20).ok());
  EXPECT_EQ(v->GetAttr(f)->size, 1u << 20);
  ASSERT_TRUE(v->Fallocate(f, FALLOC_FL_KEEP_SIZE, 0, 4 << 20).ok());
  EXPECT_EQ(v->GetAttr(f)->size, 1u << 20);
  EXPECT_EQ(v->Fallocate(f, 0x8 /* COLLAPSE_RANGE */, 0, 65536).code(), EOPNOTSUPP);
}

TEST(FileData, AppendWritesAtTheEnd) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "log", 0644, O_RDWR | O_APPEND, kRoot);
  for (int i = 0; i < 100; ++i) {
    std::string line = fmt::format("line {}\n", i);
    ASSERT_TRUE(v->Write(f.ino, 0, Bytes(line), true).ok());
  }
  std::string expect;
  for (int i = 0; i < 100; ++i) expect += fmt::format("line {}\n", i);
  EXPECT_EQ(v.ReadAll(f.ino), expect);
  ASSERT_TRUE(v->Release(f.ino).ok());
}

TEST(FileData, IdenticalFilesAreStoredOnce) {
  TestVolume v;
  std::string data = RandomBytes(1 << 20, 5);
  v.CreateFile(kRootIno, "a", data);
  v.CreateFile(kRootIno, "b", data);
  ASSERT_TRUE(v->Sync().ok());
  auto u = v->store()->Usage();
  EXPECT_EQ(u.stats.referenced_bytes, 2u * data.size());
  EXPECT_EQ(u.stats.unique_bytes, data.size());
  ASSERT_TRUE(v->Unlink(kRootIno, "a").ok());
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_EQ(v->store()->Usage().stats.unique_bytes, data.size());
  EXPECT_EQ(v.ReadAll(v->Lookup(kRootIno, "b")->ino), data);
}

TEST(FileData, CompressibleDataIsStoredCompressed) {
  testing::TestVolume v(256ull << 20, MkfsOptions{.compression = *CompressionSpec::Parse("zstd:3")});
  std::string text = RandomBytes(4 << 20, 6, true);
  v.CreateFile(kRootIno, "text", text);
  ASSERT_TRUE(v->Sync().ok());
  auto u = v->store()->Usage();
  EXPECT_GT(u.stats.unique_bytes, 3 * u.stats.stored_bytes);
}

TEST(FileData, SmallFilesArePackedNotRoundedUpToBlocks) {
  TestVolume v;
  for (int i = 0; i < 200; ++i) v.CreateFile(kRootIno, fmt::format("small{}", i), RandomBytes(300, 1000 + i));
  ASSERT_TRUE(v->Sync().ok());
  auto u = v->store()->Usage();
  EXPECT_EQ(u.stats.chunks, 200u);
  EXPECT_LT(u.stats.stored_bytes, 200u * 400) << "300-byte files must not take 4 KiB each";
}

TEST(FileData, BufferedDataStaysWithinTheCacheLimit) {
  VolumeOptions opts;
  opts.cache_bytes = 8 << 20;
  testing::TestVolume v(512ull << 20, MkfsOptions{}, opts);
  auto f = *v->Create(kRootIno, "big", 0644, O_RDWR, kRoot);
  std::string block = RandomBytes(1 << 20, 7);
  uint64_t peak = 0;
  for (int i = 0; i < 96; ++i) {
    v.WriteAt(f.ino, uint64_t(i) << 20, block);
    peak = std::max(peak, v->Info()->dirty_bytes);
  }
  EXPECT_LE(peak, opts.cache_bytes);
  ASSERT_TRUE(v->Release(f.ino).ok());
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_EQ(v->GetAttr(f.ino)->size, 96u << 20);
  std::string buf(1 << 20, '\0');
  ASSERT_TRUE(v->Read(f.ino, 50u << 20, std::span<std::byte>(reinterpret_cast<std::byte*>(buf.data()), buf.size())).ok());
  EXPECT_EQ(buf, block);
}

TEST(FileData, FullVolumeGivesEnospcAndRecoversAfterDelete) {
  testing::TestVolume v(48ull << 20);
  Status last;
  int written = 0;
  for (int i = 0; i < 100 && last.ok(); ++i) {
    auto attr = v->Create(kRootIno, fmt::format("f{}", i), 0644, O_RDWR, kRoot);
    ASSERT_TRUE(attr.ok());
    std::string block = RandomBytes(1 << 20, 1000 + i);  // nothing to dedup
    auto n = v->Write(attr->ino, 0, Bytes(block));
    if (!n.ok()) last = n.status();
    else last = v->Fsync(attr->ino, false);
    ASSERT_TRUE(v->Release(attr->ino).ok());
    if (last.ok()) ++written;
  }
  EXPECT_EQ(last.code(), ENOSPC) << last.ToString();
  // Of its eleven 4 MiB segments, metadata takes two at least (the
  // journal's two copies lie in different segments) and data keeps two free.
  EXPECT_GT(written, 16);
  // Everything written before stays readable.
  EXPECT_EQ(v.ReadAll(v->Lookup(kRootIno, "f0")->ino), RandomBytes(1 << 20, 1000));
  for (int i = 0; i < written / 2; ++i) ASSERT_TRUE(v->Unlink(kRootIno, fmt::format("f{}", i)).ok());
  ASSERT_TRUE(v->Sync().ok());
  uint64_t again = v.CreateFile(kRootIno, "again", RandomBytes(4 << 20, 9));
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_EQ(v->GetAttr(again)->size, 4u << 20);
}

// Writes a write-back cache had acknowledged (the kernel's) that find the
// volume full: the refused range reads as EIO, never zeros; writes past it
// are refused; fsync reports it; the durable file holds exactly a prefix of
// what was written, and deleting it makes the volume writable again.
TEST(FileData, CachedWritesTheVolumeCannotHoldAreMarkedLostNotZeros) {
  std::atomic<int> told{0};
  VolumeOptions options;
  options.on_data_lost = [&](uint64_t) { ++told; };  // the kernel's copy of the pages must go
  testing::TestVolume v(48ull << 20, {}, options);
  auto f = *v->Create(kRootIno, "big", 0644, O_RDWR, kRoot);
  const uint64_t chunk = v->superblock().chunk_size;
  const std::string data = RandomBytes(64 << 20, 77);  // more than fits; nothing to dedup
  uint64_t accepted = 0;
  Status refused;
  for (uint64_t off = 0; off < data.size(); off += 1 << 20) {
    auto n = v->Write(f.ino, off, Bytes(data.substr(off, 1 << 20)), false, /*cached=*/true);
    if (!n.ok()) {
      refused = n.status();
      break;
    }
    accepted = off + *n;
  }
  ASSERT_EQ(refused.code(), ENOSPC) << refused.ToString();
  ASSERT_GT(accepted, 8u << 20);
  EXPECT_GE(told.load(), 1);
  std::vector<std::byte> out(4096);
  auto r = v->Read(f.ino, accepted + 4096, out);
  EXPECT_FALSE(r.ok()) << "a refused range must not read as zeros";
  if (!r.ok()) {
    EXPECT_EQ(r.status().code(), EIO);
  }
  auto later = v->Write(f.ino, accepted + (4 << 20), Bytes(std::string(4096, 'x')), false, true);
  EXPECT_FALSE(later.ok()) << "a write past lost data must not be accepted";
  Status synced = v->Fsync(f.ino, false);
  EXPECT_EQ(synced.code(), ENOSPC) << synced.ToString();
  ASSERT_TRUE(v->Release(f.ino).ok());
  v.Close();
  v.Open();
  const std::string kept = v.ReadAll(f.ino);
  // What the refused write buffered before the volume ran out may stay.
  EXPECT_LE(kept.size(), accepted + (1 << 20));
  EXPECT_GE(kept.size() + chunk, accepted) << "more than the refused write's chunks went";
  EXPECT_TRUE(kept == data.substr(0, kept.size())) << "the durable file is not a prefix of what was written";
  ASSERT_TRUE(v->Unlink(kRootIno, "big").ok());
  ASSERT_TRUE(v->Sync().ok());
  uint64_t again = v.CreateFile(kRootIno, "again", RandomBytes(4 << 20, 9));
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_EQ(v.ReadAll(again), RandomBytes(4 << 20, 9));
}

TEST(FileData, ConcurrentWritersAndReaders) {
  TestVolume v;
  constexpr int kThreads = 4;
  std::vector<std::string> contents;
  std::vector<uint64_t> inos;
  for (int t = 0; t < kThreads; ++t) {
    contents.push_back(RandomBytes(3 << 20, 50 + t, t % 2 == 0));
    inos.push_back(v->Create(kRootIno, fmt::format("t{}", t), 0644, O_RDWR, kRoot)->ino);
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string& c = contents[t];
      for (size_t off = 0; off < c.size(); off += 12345) {
        size_t n = std::min<size_t>(12345, c.size() - off);
        if (!v->Write(inos[t], off, Bytes(c.substr(off, n))).ok()) ++failures;
        if (off % 5 == 0 && !v->Fsync(inos[t], true).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(v.ReadAll(inos[t]), contents[t]);
    ASSERT_TRUE(v->Release(inos[t]).ok());
  }
  v.Reopen();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(v.ReadAll(inos[t]), contents[t]);
}

}  // namespace
}  // namespace qcfs
