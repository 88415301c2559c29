// A damaged chunk reads as EIO, never as wrong bytes; qcfs check names the
// file that holds it; repair keeps the file.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "qcfs/core/unique_fd.h"
#include "qcfs/fs/volume.h"
#include "qcfs/meta/schema.h"
#include "tests/testutil/mounted_volume.h"

namespace qcfs {
namespace {

using testing::MountedVolume;
using testing::RandomBytes;
using testing::ReadFile;
using testing::WriteFile;

// Device offset of the record holding chunk `index` of `name` (in the root).
uint64_t ChunkOffset(const std::string& image, const std::string& name, uint64_t index) {
  VolumeOptions o;
  o.read_only = true;
  auto v = Volume::Open(image, o);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
  auto attr = (*v)->Lookup(kRootIno, name);
  EXPECT_TRUE(attr.ok());
  auto ext = (*v)->db()->Get(schema::ExtentKey(attr->ino, index));
  schema::ExtentRecord e;
  EXPECT_TRUE(ext.ok() && ext->has_value() && schema::ExtentRecord::Decode(**ext, &e));
  auto chunk = (*v)->db()->Get(schema::ChunkKey(e.fp));
  schema::ChunkIndexRecord rec;
  EXPECT_TRUE(chunk.ok() && chunk->has_value() && schema::ChunkIndexRecord::Decode(**chunk, &rec));
  return (*v)->superblock().SegmentOffset(rec.segment) + rec.offset;
}

void FlipByte(const std::string& image, uint64_t offset) {
  std::fstream f(image, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c;
  f.get(c);
  c = static_cast<char>(c ^ 0x40);
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(c);
}

TEST(Corruption, DamagedChunkIsEioAndCheckNamesTheFile) {
  MountedVolume v;
  std::string victim = RandomBytes(1 << 20, 1);
  std::string bystander = RandomBytes(1 << 20, 2);
  ASSERT_EQ(::mkdir(v.Path("docs").c_str(), 0755), 0);
  WriteFile(v.Path("victim"), victim);
  WriteFile(v.Path("docs/bystander"), bystander);
  ASSERT_EQ(v.Unmount().exit_code, 0);

  FlipByte(v.image(), ChunkOffset(v.image(), "victim", 3) + 100);

  ASSERT_EQ(v.Mount().exit_code, 0);
  UniqueFd fd(::open(v.Path("victim").c_str(), O_RDONLY | O_DIRECT));
  ASSERT_TRUE(fd.valid());
  std::vector<char> buf(65536);
  void* aligned = nullptr;
  ASSERT_EQ(::posix_memalign(&aligned, 4096, 65536), 0);
  EXPECT_EQ(::pread(fd.get(), aligned, 65536, 3 * 65536), -1) << "the damaged chunk must not be returned";
  EXPECT_EQ(errno, EIO);
  ASSERT_EQ(::pread(fd.get(), aligned, 65536, 4 * 65536), 65536) << "the rest of the file stays readable";
  EXPECT_EQ(std::memcmp(aligned, victim.data() + 4 * 65536, 65536), 0);
  ::free(aligned);
  fd.reset();
  EXPECT_EQ(ReadFile(v.Path("docs/bystander")), bystander);
  ASSERT_EQ(v.Unmount().exit_code, 0);

  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 1) << check.output;
  EXPECT_NE(check.output.find("checksum mismatch"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("affects /victim"), std::string::npos) << check.output;
  auto repair = v.Qcfs("check --repair --json " + v.image());
  EXPECT_EQ(repair.exit_code, 1);
  auto j = nlohmann::json::parse(repair.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << repair.output;
  ASSERT_EQ(j["findings"].size(), 1u);
  EXPECT_EQ(j["findings"][0]["kind"], "damaged-chunk");
  EXPECT_EQ(j["findings"][0]["repaired"], false);
  ASSERT_EQ(v.Mount().exit_code, 0);
  EXPECT_EQ(::access(v.Path("victim").c_str(), F_OK), 0) << "damaged data is never deleted";
}

// qcfs check --scrub reads every chunk back while the volume serves, and
// names the files that hold a damaged one.
TEST(Corruption, ScrubFindsDamageOnAMountedVolume) {
  MountedVolume v;
  std::string victim = RandomBytes(1 << 20, 3);
  ASSERT_EQ(::mkdir(v.Path("docs").c_str(), 0755), 0);
  WriteFile(v.Path("victim"), victim);
  WriteFile(v.Path("docs/bystander"), RandomBytes(1 << 20, 4));
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  auto clean = v.Qcfs("check --scrub " + v.mnt());
  EXPECT_EQ(clean.exit_code, 0) << clean.output;
  EXPECT_NE(clean.output.find("No damage found"), std::string::npos) << clean.output;
  ASSERT_EQ(v.Unmount().exit_code, 0);

  FlipByte(v.image(), ChunkOffset(v.image(), "victim", 7) + 200);
  ASSERT_EQ(v.Mount().exit_code, 0);
  auto scrub = v.Qcfs("check --scrub --full --json " + v.mnt());
  EXPECT_EQ(scrub.exit_code, 1) << scrub.output;
  auto j = nlohmann::json::parse(scrub.output.substr(scrub.output.find('{')), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << scrub.output;
  EXPECT_EQ(j["state"], "done");
  EXPECT_EQ(j["chunks_done"], 32u);
  ASSERT_EQ(j["damaged"].size(), 1u) << scrub.output;
  EXPECT_EQ(j["damaged"][0]["paths"], nlohmann::json::array({"/victim"}));
  // The volume went on serving: what is intact reads back.
  EXPECT_EQ(ReadFile(v.Path("docs/bystander")), RandomBytes(1 << 20, 4));
  auto human = v.Qcfs("check --scrub " + v.mnt());
  EXPECT_EQ(human.exit_code, 1);
  EXPECT_NE(human.output.find("affects /victim"), std::string::npos) << human.output;
  // A scrub is for mounted volumes.
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto offline = v.Qcfs("check --scrub " + v.mnt());
  EXPECT_EQ(offline.exit_code, 1);
  EXPECT_NE(offline.output.find("not a mounted QCFS volume"), std::string::npos) << offline.output;
}

TEST(Corruption, DamagedSuperblockFallsBackToTheSecondCopy) {
  MountedVolume v;
  WriteFile(v.Path("f"), "data");
  ASSERT_EQ(v.Unmount().exit_code, 0);
  FlipByte(v.image(), 60);
  ASSERT_EQ(v.Mount().exit_code, 0);
  EXPECT_EQ(ReadFile(v.Path("f")), "data");
}

}  // namespace
}  // namespace qcfs
