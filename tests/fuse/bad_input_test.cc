// Wrong input gets a clear one-line error and loses nothing.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "qcfs/io/device.h"
#include "qcfs/store/superblock.h"
#include "tests/testutil/mounted_volume.h"

namespace qcfs {
namespace {

using testing::MountedVolume;
using testing::RandomBytes;
using testing::ReadFile;
using testing::Shell;
using testing::TempDir;
using testing::WriteFile;

testing::CommandResult Qcfs(const std::string& args) { return Shell(testing::QcfsBin() + " " + args); }

bool Have(const std::string& tool) { return Shell("command -v " + tool).exit_code == 0; }

TEST(BadInput, MkfsRefusesToOverwriteAFileSystem) {
  TempDir dir;
  struct Fs {
    const char* tool;
    const char* cmd;
    const char* name;
  };
  const Fs kinds[] = {{"mkfs.ext4", "mkfs.ext4 -q -F", "ext4"},
                      {"mkfs.xfs", "mkfs.xfs -q -f", "xfs"},
                      {"mkfs.btrfs", "mkfs.btrfs -q -f", "btrfs"}};
  int tried = 0;
  for (const Fs& fs : kinds) {
    if (!Have(fs.tool)) continue;
    ++tried;
    std::string img = dir.Join(std::string(fs.name) + ".img");
    ASSERT_EQ(Shell("truncate -s 400M " + img + " && " + fs.cmd + " " + img).exit_code, 0) << fs.name;
    auto r = Qcfs("mkfs " + img);
    EXPECT_EQ(r.exit_code, 1) << fs.name;
    EXPECT_NE(r.output.find(fs.name), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
    auto mount = Qcfs("mount " + img + " " + dir.path());
    EXPECT_EQ(mount.exit_code, 1);
    EXPECT_NE(mount.output.find("not a QCFS volume"), std::string::npos) << mount.output;
    EXPECT_NE(mount.output.find(fs.name), std::string::npos) << mount.output;
    EXPECT_EQ(Qcfs("mkfs --force " + img).exit_code, 0);
  }
  if (tried == 0) GTEST_SKIP() << "no mkfs.ext4, mkfs.xfs or mkfs.btrfs";
}

TEST(BadInput, MkfsRefusesToOverwriteQcfsAndTakesForce) {
  TempDir dir;
  std::string img = dir.Join("v.img");
  ASSERT_EQ(Qcfs("mkfs --size 128M " + img).exit_code, 0);
  auto again = Qcfs("mkfs " + img);
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("holds a QCFS volume"), std::string::npos) << again.output;
  EXPECT_EQ(Qcfs("mkfs --force " + img).exit_code, 0);
  auto size = Qcfs("mkfs --size banana " + dir.Join("w.img"));
  EXPECT_EQ(size.exit_code, 1);
  EXPECT_NE(size.output.find("invalid size 'banana'"), std::string::npos) << size.output;
  auto chunk = Qcfs("mkfs --size 128M --chunk-size 3K " + dir.Join("w.img"));
  EXPECT_NE(chunk.output.find("chunk size"), std::string::npos) << chunk.output;
}

TEST(BadInput, MountRefusesANewerFormat) {
  TempDir dir;
  std::string img = dir.Join("v.img");
  ASSERT_EQ(Qcfs("mkfs --size 128M " + img).exit_code, 0);
  {
    auto dev = OpenDevice(img, DeviceOptions{});
    ASSERT_TRUE(dev.ok());
    auto sb = ReadSuperblock(dev->get());
    ASSERT_TRUE(sb.ok());
    sb->format_version = Superblock::kFormatVersion + 1;
    ASSERT_TRUE(WriteSuperblock(dev->get(), *sb).ok());
  }
  std::filesystem::create_directories(dir.Join("mnt"));
  auto r = Qcfs("mount " + img + " " + dir.Join("mnt"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("newer"), std::string::npos) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << "one line: " << r.output;
}

TEST(BadInput, MissingAndBusyMountpoints) {
  MountedVolume v;
  auto missing = v.Qcfs("mount " + v.image() + " " + v.dir().Join("nowhere"));
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("does not exist"), std::string::npos) << missing.output;
  auto again = v.Qcfs("mount " + v.image() + " " + v.mnt());
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("already"), std::string::npos) << again.output;
  std::filesystem::create_directories(v.dir().Join("other"));
  auto twice = v.Qcfs("mount " + v.image() + " " + v.dir().Join("other"));
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_NE(twice.output.find("already mounted"), std::string::npos) << twice.output;
  auto opt = v.Qcfs("mount -o frobnicate " + v.image() + " " + v.dir().Join("other"));
  EXPECT_NE(opt.output.find("unknown mount option 'frobnicate'"), std::string::npos) << opt.output;
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.output.find("mounted"), std::string::npos) << check.output;
}

TEST(BadInput, FullDeviceGivesEnospcAndStaysUsable) {
  MountedVolume v(MountedVolume::Options{.size = 96ull << 20});
  int files = 0;
  bool full = false;
  for (int i = 0; i < 200 && !full; ++i) {
    std::string data = RandomBytes(1 << 20, 100 + i);
    int fd = ::open(v.Path("f" + std::to_string(i)).c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ssize_t n = ::write(fd, data.data(), data.size());
    int err = n < 0 ? errno : 0;
    if (n == static_cast<ssize_t>(data.size()) && ::fsync(fd) == 0) {
      ++files;
    } else {
      full = true;
      if (err == 0) err = errno;
      EXPECT_EQ(err, ENOSPC);
    }
    ::close(fd);
  }
  EXPECT_TRUE(full);
  EXPECT_GT(files, 40);
  EXPECT_EQ(ReadFile(v.Path("f0")), RandomBytes(1 << 20, 100));
  for (int i = 0; i < files; i += 2) ASSERT_EQ(::unlink(v.Path("f" + std::to_string(i)).c_str()), 0);
  std::string again = RandomBytes(8 << 20, 999);
  WriteFile(v.Path("again"), again);
  EXPECT_EQ(ReadFile(v.Path("again")), again);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

// The writeback cache on a volume that fills: write(2) itself returns
// ENOSPC (SpaceGuard), fsync and close report nothing lost, and after a
// remount the file holds exactly the bytes whose writes succeeded. Deleting
// it makes the volume writable again.
TEST(BadInput, FullVolumeRefusesWritesAtWriteTimeAndKeepsEveryAcceptedByte) {
  MountedVolume v(MountedVolume::Options{.size = 300ull << 20});
  const std::string path = v.Path("big");
  int fd = ::open(path.c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  std::string written;
  int accepted = 0, refused = 0, refused_errno = 0;
  for (int i = 0; i < 500; ++i) {
    std::string block = RandomBytes(1 << 20, 5000 + i);  // nothing to compress or dedup
    ssize_t n = ::write(fd, block.data(), block.size());
    if (n < 0) {
      refused_errno = errno;
      ++refused;
      continue;
    }
    written += block.substr(0, static_cast<size_t>(n));
    ++accepted;
  }
  const int fsync_errno = ::fsync(fd) == 0 ? 0 : errno;
  const int close_errno = ::close(fd) == 0 ? 0 : errno;
  std::printf("300 MiB volume: %d writes of 1 MiB accepted (%zu bytes), %d refused (%s); fsync %s, close %s\n",
              accepted, written.size(), refused, std::strerror(refused_errno), std::strerror(fsync_errno),
              std::strerror(close_errno));
  EXPECT_GT(refused, 0) << "write(2) never refused on a full volume";
  EXPECT_EQ(refused_errno, ENOSPC);
  EXPECT_EQ(fsync_errno, 0) << "an accepted write was not kept";
  EXPECT_EQ(close_errno, 0);
  EXPECT_GT(accepted, 150);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  std::string kept = ReadFile(path);
  EXPECT_EQ(kept.size(), written.size());
  size_t first = 0;
  while (first < std::min(kept.size(), written.size()) && kept[first] == written[first]) ++first;
  EXPECT_TRUE(kept == written) << "the remounted file differs from the bytes whose writes succeeded, from byte "
                               << first << " (block " << first / (1 << 20) << ", "
                               << (first < kept.size() && kept[first] == 0 ? "zero" : "other") << " bytes)";
  ASSERT_EQ(::unlink(path.c_str()), 0);
  std::string again = RandomBytes(32 << 20, 999);
  WriteFile(v.Path("again"), again);
  EXPECT_EQ(ReadFile(v.Path("again")), again);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(BadInput, InfoOfSomethingThatIsNotAVolume) {
  TempDir dir;
  auto r = Qcfs("info " + dir.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("not a mounted QCFS volume"), std::string::npos) << r.output;
  WriteFile(dir.Join("junk"), RandomBytes(1 << 20, 1));
  r = Qcfs("info " + dir.Join("junk"));
  EXPECT_NE(r.output.find("not a QCFS volume"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qcfs
