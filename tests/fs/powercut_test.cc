// Power cuts under a whole volume. The device (in memory) fails every write
// and sync after a random one, as if the power went; then each 4 KiB block
// written since the last sync keeps its new or its old contents at random
// (the writes reached the media in any order); after some cuts a bit of
// one copy of the metadata journal flips as well. After each cut: qcfs check
// is clean (but for a journal record it read from the other copy), and
// every file whose state was made durable (fsync of the file, then of its
// directory after a rename or unlink) holds exactly that state.
#include <fcntl.h>
#include <linux/falloc.h>

#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "qcfs/check/check.h"
#include "qcfs/fs/volume.h"
#include "qcfs/io/mem_device.h"
#include "qcfs/meta/metafs.h"
#include "qcfs/store/superblock.h"
#include "tests/testutil/env.h"
#include "tests/testutil/mem_volume.h"
#include "tests/testutil/volume_fixture.h"

namespace qcfs {
namespace {

using testing::Bytes;
using testing::EnvOr;
using testing::LentDevice;
using testing::ReadWhole;
using testing::Resolve;

std::string Data(std::mt19937_64& rng, size_t size) {
  std::string s(size, '\0');
  // Half compressible, half not; some of it repeats (dedup).
  const bool text = rng() % 2 == 0;
  uint64_t x = rng() % 4;  // few distinct patterns: chunks repeat across files
  for (size_t i = 0; i < size; ++i) {
    if (text) {
      s[i] = static_cast<char>('a' + (i / 7 + x) % 26);
    } else {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      s[i] = static_cast<char>(x >> 56);
    }
  }
  return s;
}

// What the workload has made durable, and what it may have left half done.
struct Model {
  std::map<std::string, std::string> files;  // "dir/name" -> content
  std::set<std::string> dirs;
  std::set<std::string> unknown;  // a durability step failed: anything goes
  std::string big;                // "big", grown by fsync'd appends
  size_t big_min = 0;             // bytes of it that must be there
};

class Driver {
 public:
  Driver(Volume* v, Model* m, std::mt19937_64* rng) : v_(v), m_(m), rng_(*rng) {}

  // One random operation; false once the device has failed.
  bool Step(int i) {
    switch (rng_() % 8) {
      case 0:
      case 1:
        return ReplaceFile(i);
      case 2:
        return OverwriteInPlace();
      case 3:
        return AppendBig();
      case 4:
        return MakeDir();
      case 5:
        return RemoveFile();
      case 6:
        return PunchHole();
      default:
        return Snapshot(i);
    }
  }

 private:
  std::string Dir() {
    if (m_->dirs.empty() || rng_() % 4 == 0) return "";
    auto it = m_->dirs.begin();
    std::advance(it, static_cast<long>(rng_() % m_->dirs.size()));
    return *it;
  }
  Result<uint64_t> DirIno(const std::string& dir) {
    if (dir.empty()) return kRootIno;
    QCFS_ASSIGN_OR_RETURN(auto a, v_->Lookup(kRootIno, dir));
    return a.ino;
  }
  std::string Join(const std::string& dir, const std::string& name) { return dir.empty() ? name : dir + "/" + name; }
  std::string PickFile() {
    if (m_->files.empty()) return "";
    auto it = m_->files.begin();
    std::advance(it, static_cast<long>(rng_() % m_->files.size()));
    return it->first;
  }

  // The atomic-replace idiom: a temp file written and fsync'd, renamed over
  // the target, the directory fsync'd.
  bool ReplaceFile(int i) {
    std::string dir = Dir();
    std::string target = Join(dir, fmt::format("f{}", rng_() % 24));
    std::string data = Data(rng_, rng_() % 3 == 0 ? rng_() % 300 : rng_() % (400 << 10));
    auto d = DirIno(dir);
    if (!d.ok()) return false;
    std::string tmp = fmt::format("tmp{}", i);
    auto c = v_->Create(*d, tmp, 0644, O_WRONLY, Caller{});
    if (!c.ok()) return false;
    bool ok = v_->Write(c->ino, 0, Bytes(data)).ok() && v_->Fsync(c->ino, false).ok();
    v_->Release(c->ino).IgnoreError();
    if (!ok) return false;
    std::string leaf = target.substr(target.rfind('/') == std::string::npos ? 0 : target.rfind('/') + 1);
    if (!v_->Rename(*d, tmp, *d, leaf, 0).ok()) return false;
    m_->unknown.insert(target);  // old or new until the directory is synced
    if (!v_->Fsync(*d, false).ok()) return false;
    m_->unknown.erase(target);
    m_->files[target] = data;
    return true;
  }

  bool OverwriteInPlace() {
    std::string path = PickFile();
    if (path.empty()) return true;
    auto a = Resolve(path);
    if (!a.ok()) return false;
    std::string& content = m_->files[path];
    uint64_t off = content.empty() ? 0 : rng_() % content.size();
    std::string data = Data(rng_, 1 + rng_() % (128 << 10));
    if (!v_->Open(a->ino, O_WRONLY).ok()) return false;
    m_->unknown.insert(path);
    bool ok = v_->Write(a->ino, off, Bytes(data)).ok() && v_->Fsync(a->ino, false).ok();
    v_->Release(a->ino).IgnoreError();
    if (!ok) return false;
    if (content.size() < off + data.size()) content.resize(off + data.size(), '\0');
    content.replace(off, data.size(), data);
    m_->unknown.erase(path);
    return true;
  }

  bool PunchHole() {
    std::string path = PickFile();
    if (path.empty() || m_->files[path].empty()) return true;
    auto a = Resolve(path);
    if (!a.ok()) return false;
    std::string& content = m_->files[path];
    uint64_t off = rng_() % content.size();
    uint64_t len = 1 + rng_() % (content.size() - off);
    m_->unknown.insert(path);
    if (!v_->Fallocate(a->ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len).ok()) return false;
    if (!v_->Fsync(a->ino, false).ok()) return false;
    std::fill(content.begin() + static_cast<long>(off), content.begin() + static_cast<long>(off + len), '\0');
    m_->unknown.erase(path);
    return true;
  }

  bool AppendBig() {
    auto a = v_->Lookup(kRootIno, "big");
    uint64_t ino;
    if (a.ok()) {
      ino = a->ino;
      if (!v_->Open(ino, O_WRONLY).ok()) return false;
    } else {
      auto c = v_->Create(kRootIno, "big", 0644, O_WRONLY, Caller{});
      if (!c.ok()) return false;
      ino = c->ino;
    }
    std::string more = Data(rng_, rng_() % (256 << 10));
    auto size = v_->GetAttr(ino);
    bool ok = size.ok() && v_->Write(ino, size->size, Bytes(more)).ok();
    if (ok) m_->big += more;  // may be there after a cut, but need not be
    ok = ok && v_->Fsync(ino, false).ok() && v_->Fsync(kRootIno, false).ok();
    v_->Release(ino).IgnoreError();
    if (ok) m_->big_min = m_->big.size();
    return ok;
  }

  bool MakeDir() {
    if (m_->dirs.size() >= 6) return true;
    std::string name = fmt::format("d{}", m_->dirs.size());
    auto r = v_->Mkdir(kRootIno, name, 0755, Caller{});
    if (!r.ok()) return r.status().code() == EEXIST;
    if (!v_->Fsync(kRootIno, false).ok()) return false;
    m_->dirs.insert(name);
    return true;
  }

  bool RemoveFile() {
    std::string path = PickFile();
    if (path.empty()) return true;
    size_t slash = path.rfind('/');
    auto d = DirIno(slash == std::string::npos ? "" : path.substr(0, slash));
    if (!d.ok()) return false;
    m_->unknown.insert(path);
    m_->files.erase(path);
    if (!v_->Unlink(*d, slash == std::string::npos ? path : path.substr(slash + 1)).ok()) return false;
    return v_->Fsync(*d, false).ok() && (m_->unknown.erase(path), true);
  }

  bool Snapshot(int i) {
    auto list = v_->ListSnapshots(false);
    if (!list.ok()) return false;
    if (list->size() >= 3) return v_->DeleteSnapshot(list->front().name).ok();
    return v_->CreateSnapshot(fmt::format("s{}", i)).ok();
  }

  Result<Attr> Resolve(const std::string& path) { return testing::Resolve(v_, path); }

  Volume* v_;
  Model* m_;
  std::mt19937_64& rng_;
};

// Flips one bit of one copy of the metadata journal, somewhere in its
// records (synced or not).
void FlipBitInOneJournalCopy(MemDevice* dev, std::mt19937_64& rng) {
  auto sb = ReadSuperblock(dev);
  ASSERT_TRUE(sb.ok()) << sb.status().ToString();
  auto fs = MetaFs::MountReadOnly(dev, LayoutFor(*sb));
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  const std::vector<MetaFs::Extent> copy =
      rng() % 2 == 0 ? (*fs)->JournalExtents() : (*fs)->JournalMirrorExtents();
  ASSERT_FALSE(copy.empty());
  uint64_t pos = rng() % (*fs)->Usage().journal_bytes;
  for (const MetaFs::Extent& e : copy) {
    if (pos >= e.length) {
      pos -= e.length;
      continue;
    }
    std::byte b;
    dev->Peek(e.offset + pos, {&b, 1});
    b ^= std::byte(1u << (rng() % 8));
    dev->Poke(e.offset + pos, {&b, 1});
    return;
  }
}

TEST(PowerCut, DurableStateSurvivesCutsWithWritesReordered) {
  const uint64_t rounds = EnvOr("QCFS_POWERCUT_ROUNDS", 80);
  const uint64_t seed = EnvOr("QCFS_POWERCUT_SEED", 7);
  std::mt19937_64 rng(seed);
  MemDevice dev(192ull << 20);
  MkfsOptions mk;
  mk.chunk_size = 16 << 10;
  ASSERT_TRUE(MkfsOn(&dev, mk).ok());
  VolumeOptions vo;
  vo.cache_bytes = 32ull << 20;
  Model model;
  uint64_t ops = 0, verified = 0, kept_blocks = 0, copies_repaired = 0;
  for (uint64_t round = 0; round < rounds; ++round) {
    SCOPED_TRACE(fmt::format("seed {} round {}", seed, round));
    // What the last cut left must check clean and hold every durable state.
    CheckOptions co;
    co.full = true;
    auto report = CheckVolumeOn(std::make_unique<LentDevice>(&dev), co);
    ASSERT_TRUE(report.ok()) << report.status().ToString();
    std::string findings;
    for (auto& f : report->findings) {
      if (f.kind == "journal-copy") {
        ++copies_repaired;
        continue;
      }
      findings += f.kind + ": " + f.detail + "\n";
    }
    ASSERT_TRUE(findings.empty()) << findings;

    auto v = Volume::OpenOn(std::make_unique<LentDevice>(&dev), vo);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    Volume* vol = v->get();
    for (const auto& [path, want] : model.files) {
      if (model.unknown.count(path)) continue;
      auto a = Resolve(vol, path);
      ASSERT_TRUE(a.ok()) << path << ": " << a.status().ToString();
      auto got = ReadWhole(vol, a->ino);
      ASSERT_TRUE(got.ok()) << path << ": " << got.status().ToString();
      ASSERT_EQ(got->size(), want.size()) << path;
      ASSERT_TRUE(*got == want) << path << " differs from its durable content";
      ++verified;
    }
    for (const auto& dir : model.dirs) ASSERT_TRUE(vol->Lookup(kRootIno, dir).ok()) << dir;
    if (model.big_min > 0) {
      auto b = vol->Lookup(kRootIno, "big");
      ASSERT_TRUE(b.ok());
      auto got = ReadWhole(vol, b->ino);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ASSERT_GE(got->size(), model.big_min);
      ASSERT_TRUE(got->compare(0, model.big_min, model.big, 0, model.big_min) == 0) << "fsync'd appends differ";
      model.big = *got;  // what survived is the file now
      model.big_min = got->size();
    }
    // Files left half done: readable (no EIO, whatever they hold) or absent.
    for (const auto& path : model.unknown) {
      auto a = Resolve(vol, path);
      if (!a.ok()) continue;
      auto got = ReadWhole(vol, a->ino);
      ASSERT_TRUE(got.ok()) << path << ": " << got.status().ToString();
      model.files[path] = *got;  // its state from now on
    }
    model.unknown.clear();

    // Now a workload until the power goes at a random write.
    std::atomic<uint64_t> writes{0};
    const uint64_t cut = 1 + rng() % 3000;
    dev.SetFaultHook([&](const IoOp& op) {
      if (op.kind == IoOp::Kind::kWrite && ++writes > cut) return Status::Error(EIO, "power cut");
      return Status::Ok();
    });
    Driver driver(vol, &model, &rng);
    for (int i = 0; i < 400; ++i, ++ops) {
      if (!driver.Step(static_cast<int>(round * 1000 + i))) break;
    }
    v->reset();  // closing fails past the cut: nothing more reaches the device
    dev.SetFaultHook(nullptr);
    kept_blocks += dev.PowerCut(rng());
    if (round % 3 == 1) FlipBitInOneJournalCopy(&dev, rng);
  }
  std::printf(
      "power cuts: %llu rounds, %llu operations, %llu durable files verified, %llu unsynced blocks kept, %llu checks "
      "found journal records damaged in one copy\n",
      static_cast<unsigned long long>(rounds), static_cast<unsigned long long>(ops),
      static_cast<unsigned long long>(verified), static_cast<unsigned long long>(kept_blocks),
      static_cast<unsigned long long>(copies_repaired));
  EXPECT_GT(verified, rounds);
  if (rounds >= 30) {
    EXPECT_GT(copies_repaired, 0u);
  }
}

}  // namespace
}  // namespace qcfs
