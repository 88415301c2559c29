// Snapshots through the Volume API: views, diff, delete, restore, space
// accounting, and a randomized model test.
#include <fcntl.h>

#include <map>
#include <random>

#include <gtest/gtest.h>

#include "qcfs/check/check.h"
#include "qcfs/fs/volume.h"
#include "tests/testutil/volume_fixture.h"

namespace qcfs {
namespace {

using testing::Names;
using testing::RandomBytes;
using testing::TestVolume;
using testing::Walk;

const Caller kRoot{0, 0};

uint64_t SnapRoot(Volume* v, const std::string& name) {
  auto a = v->Lookup(kSnapshotsDirIno, name);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  return a.ok() ? a->ino : 0;
}

// The content of a file, or the error in angle brackets (for EXPECT_EQ).
std::string ReadView(Volume* v, uint64_t ino) {
  auto r = testing::ReadWhole(v, ino);
  return r.ok() ? *r : "<" + r.status().ToString() + ">";
}

TEST(Snapshot, ViewShowsTheTreeAsItWas) {
  TestVolume v;
  uint64_t f = v.CreateFile(kRootIno, "doc", "version one");
  auto d = *v->Mkdir(kRootIno, "dir", 0755, kRoot);
  v.CreateFile(d.ino, "inner", "inside");
  auto snap = v->CreateSnapshot("monday");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  ASSERT_TRUE(v->Open(f, O_RDWR).ok());
  v.WriteAt(f, 0, "VERSION TWO, longer");
  ASSERT_TRUE(v->Release(f).ok());
  ASSERT_TRUE(v->Unlink(d.ino, "inner").ok());
  v.CreateFile(kRootIno, "new", "after");

  uint64_t root = SnapRoot(v.get(), "monday");
  EXPECT_EQ(Names(v.get(), root), (std::vector<std::string>{"dir", "doc"}));
  EXPECT_EQ(ReadView(v.get(), Walk(v.get(), root, "doc")->ino), "version one");
  EXPECT_EQ(ReadView(v.get(), Walk(v.get(), root, "dir/inner")->ino), "inside");
  EXPECT_EQ(Walk(v.get(), root, "new").status().code(), ENOENT);
  EXPECT_EQ(v.ReadAll(f), "VERSION TWO, longer");
  EXPECT_EQ(Walk(v.get(), kRootIno, "dir/inner").status().code(), ENOENT);
  EXPECT_EQ(Names(v.get(), kSnapshotsDirIno), (std::vector<std::string>{"monday"}));
  // Hidden from the root's listing, reachable by name.
  EXPECT_EQ(Names(v.get(), kRootIno), (std::vector<std::string>{"dir", "doc", "new"}));
  EXPECT_TRUE(v->Lookup(kRootIno, ".snapshots").ok());
  // And it all survives a reopen.
  v.Reopen();
  root = SnapRoot(v.get(), "monday");
  EXPECT_EQ(ReadView(v.get(), Walk(v.get(), root, "doc")->ino), "version one");
}

TEST(Snapshot, ViewsAreReadOnlyAndNamesAreChecked) {
  TestVolume v;
  v.CreateFile(kRootIno, "f", "x");
  ASSERT_TRUE(v->CreateSnapshot("s1").ok());
  uint64_t root = SnapRoot(v.get(), "s1");
  uint64_t f = Walk(v.get(), root, "f")->ino;
  EXPECT_EQ(v->Write(f, 0, testing::Bytes("y")).status().code(), EROFS);
  EXPECT_EQ(v->Mkdir(root, "d", 0755, kRoot).status().code(), EROFS);
  EXPECT_EQ(v->Unlink(root, "f").code(), EROFS);
  EXPECT_EQ(v->Open(f, O_WRONLY).status().code(), EROFS);
  EXPECT_EQ(v->SetXattr(f, "user.a", "b", 0).code(), EROFS);
  EXPECT_EQ(v->Mkdir(kRootIno, ".snapshots", 0755, kRoot).status().code(), EEXIST);
  EXPECT_EQ(v->CreateSnapshot("s1").status().code(), EEXIST);
  EXPECT_EQ(v->CreateSnapshot("a/b").status().code(), EINVAL);
  EXPECT_EQ(v->CreateSnapshot("..").status().code(), EINVAL);
  EXPECT_EQ(v->CreateSnapshot(std::string(256, 'x')).status().code(), ENAMETOOLONG);
  EXPECT_EQ(v->DeleteSnapshot("nope").code(), ENOENT);
}

TEST(Snapshot, DeletingFreesOnlyWhatNothingElseHolds) {
  TestVolume v;
  std::string a = RandomBytes(2 << 20, 1), b = RandomBytes(2 << 20, 2);
  uint64_t f = v.CreateFile(kRootIno, "f", a);
  v.CreateFile(kRootIno, "keep", RandomBytes(1 << 20, 3));
  ASSERT_TRUE(v->Sync().ok());
  uint64_t stored_one = v->store()->Usage().stats.stored_bytes;
  ASSERT_TRUE(v->CreateSnapshot("s").ok());
  ASSERT_TRUE(v->Open(f, O_RDWR).ok());
  v.WriteAt(f, 0, b);  // every chunk of f replaced
  ASSERT_TRUE(v->Release(f).ok());
  ASSERT_TRUE(v->Sync().ok());
  auto list = v->ListSnapshots(true);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].logical_bytes, 3u << 20);
  EXPECT_NEAR(static_cast<double>(*(*list)[0].exclusive_bytes), 2 << 20, 64 << 10) << "the old f only";
  uint64_t stored_two = v->store()->Usage().stats.stored_bytes;
  EXPECT_GT(stored_two, stored_one + (1 << 20));
  ASSERT_TRUE(v->DeleteSnapshot("s").ok());
  EXPECT_NEAR(static_cast<double>(v->store()->Usage().stats.stored_bytes), static_cast<double>(stored_one), 64 << 10);
  EXPECT_EQ(v.ReadAll(f), b);
  EXPECT_EQ(v->store()->Usage().stats.history_bytes, 0u);
}

TEST(Snapshot, DeletingEverythingReturnsTheSpace) {
  TestVolume v;
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 8; ++i) v.CreateFile(kRootIno, fmt::format("r{}f{}", round, i), RandomBytes(300000, round * 10 + i));
    ASSERT_TRUE(v->CreateSnapshot(fmt::format("s{}", round)).ok());
    for (int i = 0; i < 8; i += 2) ASSERT_TRUE(v->Unlink(kRootIno, fmt::format("r{}f{}", round, i)).ok());
  }
  for (int round = 0; round < 4; ++round) {
    for (int i = 1; i < 8; i += 2) ASSERT_TRUE(v->Unlink(kRootIno, fmt::format("r{}f{}", round, i)).ok());
  }
  // Middle first, then the ends: every position of a deleted snapshot.
  for (const char* s : {"s2", "s0", "s3", "s1"}) ASSERT_TRUE(v->DeleteSnapshot(s).ok()) << s;
  ASSERT_TRUE(v->Sync().ok());
  auto u = v->store()->Usage();
  EXPECT_EQ(u.stats.chunks, 0u);
  EXPECT_EQ(u.stats.stored_bytes, 0u);
  v.Close();
  CheckOptions o;
  auto r = CheckVolume(v.image(), o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->clean()) << (r->findings.empty() ? "" : r->findings[0].detail);
  v.Open();
}

TEST(Snapshot, DiffNamesWhatChanged) {
  TestVolume v(256ull << 20);
  auto d = *v->Mkdir(kRootIno, "docs", 0755, kRoot);
  uint64_t big = v.CreateFile(d.ino, "big", RandomBytes(1 << 20, 1));
  v.CreateFile(d.ino, "gone", "bye");
  v.CreateFile(kRootIno, "moved", "m");
  v.CreateFile(kRootIno, "same", "s");
  ASSERT_TRUE(v->CreateSnapshot("a").ok());
  ASSERT_TRUE(v->Open(big, O_RDWR).ok());
  v.WriteAt(big, 200000, "changed");  // one chunk
  ASSERT_TRUE(v->Release(big).ok());
  ASSERT_TRUE(v->Unlink(d.ino, "gone").ok());
  ASSERT_TRUE(v->Rename(kRootIno, "moved", d.ino, "renamed", 0).ok());
  v.CreateFile(kRootIno, "added", "+");
  ASSERT_TRUE(v->CreateSnapshot("b").ok());

  auto diff = v->Diff("a", "b");
  ASSERT_TRUE(diff.ok()) << diff.status().ToString();
  std::map<std::string, SnapshotDiff::Entry> by_path;
  for (auto& e : diff->entries) by_path[e.path] = e;
  ASSERT_TRUE(by_path.count("/added"));
  EXPECT_EQ(by_path["/added"].kind, SnapshotDiff::Entry::Kind::kAdded);
  ASSERT_TRUE(by_path.count("/docs/gone"));
  EXPECT_EQ(by_path["/docs/gone"].kind, SnapshotDiff::Entry::Kind::kDeleted);
  ASSERT_TRUE(by_path.count("/docs/renamed"));
  EXPECT_EQ(by_path["/docs/renamed"].kind, SnapshotDiff::Entry::Kind::kRenamed);
  EXPECT_EQ(by_path["/docs/renamed"].old_path, "/moved");
  ASSERT_TRUE(by_path.count("/docs/big"));
  EXPECT_EQ(by_path["/docs/big"].kind, SnapshotDiff::Entry::Kind::kModified);
  ASSERT_EQ(by_path["/docs/big"].ranges.size(), 1u);
  EXPECT_EQ(by_path["/docs/big"].ranges[0], std::make_pair(uint64_t{196608}, uint64_t{262144}));
  EXPECT_FALSE(by_path.count("/same"));
  // Against the live tree, too.
  v.CreateFile(kRootIno, "later", "l");
  auto live = v->Diff("b", "");
  ASSERT_TRUE(live.ok());
  bool found = false;
  for (auto& e : live->entries) found |= e.path == "/later";
  EXPECT_TRUE(found);
  EXPECT_EQ(v->Diff("b", "a").status().code(), EINVAL);
}

TEST(Snapshot, RestoreRollsBackAndKeepsWhatItReplaced) {
  TestVolume v;
  uint64_t f = v.CreateFile(kRootIno, "f", "original");
  auto d = *v->Mkdir(kRootIno, "d", 0755, kRoot);
  v.CreateFile(d.ino, "x", "x1");
  ASSERT_TRUE(v->SetXattr(f, "user.tag", "old", 0).ok());
  ASSERT_TRUE(v->CreateSnapshot("good").ok());
  ASSERT_TRUE(v->Open(f, O_RDWR).ok());
  v.WriteAt(f, 0, "OVERWRITTEN and longer");
  ASSERT_TRUE(v->Release(f).ok());
  ASSERT_TRUE(v->SetXattr(f, "user.tag", "new", 0).ok());
  ASSERT_TRUE(v->Unlink(d.ino, "x").ok());
  ASSERT_TRUE(v->Rmdir(kRootIno, "d").ok());
  v.CreateFile(kRootIno, "junk", "j");

  auto saved = v->RestoreSnapshot("good");
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  EXPECT_EQ(v.ReadAll(f), "original");
  EXPECT_EQ(*v->GetXattr(f, "user.tag"), "old");
  EXPECT_EQ(v.ReadAll(Walk(v.get(), kRootIno, "d/x")->ino), "x1");
  EXPECT_EQ(v->Lookup(kRootIno, "junk").status().code(), ENOENT);
  // The automatic snapshot holds the tree as it was before the restore.
  uint64_t before = SnapRoot(v.get(), *saved);
  EXPECT_EQ(ReadView(v.get(), Walk(v.get(), before, "f")->ino), "OVERWRITTEN and longer");
  EXPECT_TRUE(Walk(v.get(), before, "junk").ok());
  // The volume stays consistent.
  v.Close();
  auto r = CheckVolume(v.image(), CheckOptions{});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->clean()) << (r->findings.empty() ? "" : r->findings[0].kind + ": " + r->findings[0].detail);
  v.Open();
  EXPECT_EQ(v.ReadAll(f), "original");
}

TEST(Snapshot, OpenFilesAcrossARestore) {
  TestVolume v;
  uint64_t kept = v.CreateFile(kRootIno, "kept", "old content");
  ASSERT_TRUE(v->CreateSnapshot("s").ok());
  auto born = *v->Create(kRootIno, "born-later", 0644, O_RDWR, kRoot);
  ASSERT_TRUE(v->Open(kept, O_RDWR).ok());
  v.WriteAt(kept, 0, "NEW CONTENT");
  ASSERT_TRUE(v->RestoreSnapshot("s").ok());
  EXPECT_EQ(v.ReadAll(kept), "old content") << "an open file sees the restored content";
  std::string buf(4, '\0');
  EXPECT_EQ(v->Read(born.ino, 0, std::span<std::byte>(reinterpret_cast<std::byte*>(buf.data()), 4)).status().code(),
            ESTALE) << "a file the snapshot never had goes stale";
  EXPECT_TRUE(v->Release(born.ino).ok());
  EXPECT_TRUE(v->Release(kept).ok());
}

TEST(Snapshot, InterruptedDeleteFinishesAtTheNextOpen) {
  TestVolume v;
  uint64_t f = v.CreateFile(kRootIno, "f", RandomBytes(1 << 20, 5));
  ASSERT_TRUE(v->CreateSnapshot("s").ok());
  ASSERT_TRUE(v->Unlink(kRootIno, "f").ok());
  (void)f;
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_GT(v->store()->Usage().stats.chunks, 0u);
  // Mark the deletion as begun, as DeleteSnapshot does before its walk, and "crash".
  {
    schema::SnapshotRecord rec;
    uint64_t id = 0;
    auto list = *v->ListSnapshots(false);
    id = list[0].id;
    auto raw = *v->db()->Get(schema::SnapshotKey(id));
    ASSERT_TRUE(schema::SnapshotRecord::Decode(*raw, &rec));
    rec.state = 1;
    schema::PendingOp op;
    op.kind = 1;
    op.snapshot = id;
    op.from = rec.epoch;
    op.to = rec.epoch + 1;
    rocksdb::WriteBatch b;
    std::string val;
    rec.EncodeTo(&val);
    b.Put(schema::SnapshotKey(id), val);
    val.clear();
    op.EncodeTo(&val);
    b.Put(schema::SystemKey(schema::kPendingName), val);
    ASSERT_TRUE(v->db()->Write(&b, true).ok());
  }
  v.Reopen();
  EXPECT_TRUE(v->ListSnapshots(false)->empty());
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_EQ(v->store()->Usage().stats.chunks, 0u);
  EXPECT_FALSE(v->db()->Get(schema::SystemKey(schema::kPendingName))->has_value());
}

TEST(Snapshot, InterruptedRestoreFinishesAtTheNextOpen) {
  TestVolume v;
  uint64_t f = v.CreateFile(kRootIno, "f", "as in the snapshot");
  ASSERT_TRUE(v->CreateSnapshot("s").ok());
  ASSERT_TRUE(v->Open(f, O_RDWR).ok());
  v.WriteAt(f, 0, "AFTERWARDS, LONGER TEXT");
  ASSERT_TRUE(v->Release(f).ok());
  v.CreateFile(kRootIno, "later", "l");
  // What RestoreSnapshot records before its walk: the safety snapshot, then the intent.
  auto saved = v->CreateSnapshot("saved");
  ASSERT_TRUE(saved.ok());
  auto list = *v->ListSnapshots(false);
  schema::PendingOp op;
  op.kind = 2;
  op.snapshot = list[0].id;
  op.from = list[0].epoch;
  op.to = saved->epoch;
  rocksdb::WriteBatch b;
  std::string val;
  op.EncodeTo(&val);
  b.Put(schema::SystemKey(schema::kPendingName), val);
  ASSERT_TRUE(v->db()->Write(&b, true).ok());
  v.Reopen();  // the "crash": the next open finishes the restore
  EXPECT_EQ(v.ReadAll(f), "as in the snapshot");
  EXPECT_EQ(v->Lookup(kRootIno, "later").status().code(), ENOENT);
  uint64_t root = SnapRoot(v.get(), "saved");
  EXPECT_EQ(ReadView(v.get(), Walk(v.get(), root, "f")->ino), "AFTERWARDS, LONGER TEXT");
  v.Close();
  auto r = CheckVolume(v.image(), CheckOptions{});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->clean()) << (r->findings.empty() ? "" : r->findings[0].kind + ": " + r->findings[0].detail);
  v.Open();
}

// A randomized model test: random operations interleaved with snapshot
// create, delete and restore, checked against an in-memory model of the
// live tree and of every snapshot. QCFS_MODEL_SEED and QCFS_MODEL_OPS pick
// the run; a failure prints the seed.
TEST(Snapshot, RandomOperationsMatchAModel) {
  const uint64_t seed = std::getenv("QCFS_MODEL_SEED") ? std::strtoull(std::getenv("QCFS_MODEL_SEED"), nullptr, 10) : 7;
  const int ops = std::getenv("QCFS_MODEL_OPS") ? std::atoi(std::getenv("QCFS_MODEL_OPS")) : 3000;
  SCOPED_TRACE("QCFS_MODEL_SEED=" + std::to_string(seed));
  MkfsOptions mk;
  mk.chunk_size = 4096;  // many chunks per file
  TestVolume v(512ull << 20, mk);
  std::mt19937_64 rng(seed);
  using Tree = std::map<std::string, std::string>;  // file name (in the root) -> content
  Tree live;
  std::map<std::string, Tree> snaps;
  int next_snap = 0;
  auto pick = [&](const Tree& t) -> std::string {
    if (t.empty()) return "";
    auto it = t.begin();
    std::advance(it, rng() % t.size());
    return it->first;
  };
  auto verify = [&](const std::string& where) {
    std::vector<std::string> names = Names(v.get(), kRootIno);
    ASSERT_EQ(names.size(), live.size()) << where;
    for (auto& [name, content] : live) {
      auto a = v->Lookup(kRootIno, name);
      ASSERT_TRUE(a.ok()) << where << ": " << name;
      ASSERT_EQ(v.ReadAll(a->ino), content) << where << ": " << name;
    }
    for (auto& [snap, tree] : snaps) {
      uint64_t root = SnapRoot(v.get(), snap);
      ASSERT_EQ(Names(v.get(), root).size(), tree.size()) << where << " in " << snap;
      for (auto& [name, content] : tree) {
        auto a = v->Lookup(root, name);
        ASSERT_TRUE(a.ok()) << where << ": " << snap << "/" << name;
        ASSERT_EQ(ReadView(v.get(), a->ino), content) << where << ": " << snap << "/" << name;
      }
    }
  };
  for (int i = 0; i < ops; ++i) {
    const std::string where = fmt::format("op {}", i);
    int op = static_cast<int>(rng() % 100);
    if (op < 35) {  // write a range of a file, maybe a new one
      std::string name = rng() % 4 == 0 || live.empty() ? fmt::format("f{}", rng() % 40) : pick(live);
      std::string& content = live[name];
      uint64_t off = content.empty() ? 0 : rng() % (content.size() + 8192);
      std::string data = RandomBytes(1 + rng() % 12000, rng(), rng() % 2);
      auto a = v->Lookup(kRootIno, name);
      uint64_t ino;
      if (a.ok()) {
        ino = a->ino;
        ASSERT_TRUE(v->Open(ino, O_RDWR).ok());
      } else {
        ino = v->Create(kRootIno, name, 0644, O_RDWR, kRoot)->ino;
      }
      v.WriteAt(ino, off, data);
      ASSERT_TRUE(v->Release(ino).ok());
      if (content.size() < off + data.size()) content.resize(off + data.size(), '\0');
      content.replace(off, data.size(), data);
    } else if (op < 45 && !live.empty()) {  // truncate
      std::string name = pick(live);
      uint64_t size = rng() % (live[name].size() + 5000);
      SetAttrRequest r;
      r.size = size;
      ASSERT_TRUE(v->SetAttr(v->Lookup(kRootIno, name)->ino, r).ok()) << where;
      live[name].resize(size, '\0');
    } else if (op < 55 && !live.empty()) {  // delete
      std::string name = pick(live);
      ASSERT_TRUE(v->Unlink(kRootIno, name).ok()) << where;
      live.erase(name);
    } else if (op < 65 && !live.empty()) {  // rename, maybe over another file
      std::string from = pick(live);
      std::string to = fmt::format("f{}", rng() % 40);
      ASSERT_TRUE(v->Rename(kRootIno, from, kRootIno, to, 0).ok()) << where;
      if (from != to) {
        live[to] = live[from];
        live.erase(from);
      }
    } else if (op < 78 && snaps.size() < 24) {  // snapshot (at most 24 kept: the volume is small)
      std::string name = fmt::format("s{}", next_snap++);
      ASSERT_TRUE(v->CreateSnapshot(name).ok()) << where;
      snaps[name] = live;
    } else if (op < 90 && !snaps.empty()) {  // delete a snapshot
      auto it = snaps.begin();
      std::advance(it, rng() % snaps.size());
      ASSERT_TRUE(v->DeleteSnapshot(it->first).ok()) << where;
      snaps.erase(it);
    } else if (op < 95 && !snaps.empty()) {  // restore
      auto it = snaps.begin();
      std::advance(it, rng() % snaps.size());
      auto saved = v->RestoreSnapshot(it->first);
      ASSERT_TRUE(saved.ok()) << where << ": " << saved.status().ToString();
      snaps[*saved] = live;
      live = it->second;
    } else if (op < 97) {
      v.Reopen();
    }
    if (i % 100 == 0) verify(where);
    if (::testing::Test::HasFatalFailure()) return;
  }
  verify("end");
  // Everything deleted: the space comes back.
  for (auto& [name, tree] : snaps) ASSERT_TRUE(v->DeleteSnapshot(name).ok());
  for (auto& [name, content] : live) ASSERT_TRUE(v->Unlink(kRootIno, name).ok());
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_EQ(v->store()->Usage().stats.chunks, 0u);
  v.Close();
  auto r = CheckVolume(v.image(), CheckOptions{});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->clean()) << (r->findings.empty() ? "" : r->findings[0].kind + ": " + r->findings[0].detail);
  v.Open();
}

}  // namespace
}  // namespace qcfs
