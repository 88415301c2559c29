// The volume as a device-level object, through the real binary and mounts:
// one image file holds everything (copy it, move it, mount it elsewhere),
// freed space goes back to the host (discard, qcfs trim), and volumes grow
// (qcfs resize), mounted or not.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/testutil/mounted_volume.h"

namespace qcfs {
namespace {

using testing::CommandResult;
using testing::MountedVolume;
using testing::Shell;

// Bytes the file occupies on the host file system (what du shows).
uint64_t DiskUsage(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

uint64_t TotalBytes(const std::string& mnt) {
  struct statvfs st {};
  EXPECT_EQ(::statvfs(mnt.c_str(), &st), 0) << mnt;
  return static_cast<uint64_t>(st.f_blocks) * st.f_frsize;
}

void WriteRandom(const std::string& path, int mib) {
  auto r = Shell("head -c " + std::to_string(mib) + "M /dev/urandom > " + path + " && sync " + path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

std::string Sha(const std::string& path) {
  auto r = Shell("sha256sum < " + path);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.output.substr(0, 64);
}

// fsync of any file makes what deletes freed reusable (and discarded).
void FsyncOne(const std::string& path) {
  auto r = Shell("touch " + path + " && sync " + path);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

TEST(Trim, ImageShrinksOnTheHostAfterDeleteAndTrim) {
  MountedVolume v(MountedVolume::Options{.size = 1ull << 30, .mount_args = "-o nodiscard"});
  for (int i = 0; i < 12; ++i) WriteRandom(v.Path("f" + std::to_string(i)), 8);
  const std::string kept = Sha(v.Path("f11"));
  FsyncOne(v.Path("marker"));
  const uint64_t full = DiskUsage(v.image());
  EXPECT_GT(full, 90ull << 20);
  // Delete all but one file: with nodiscard the image keeps its blocks.
  for (int i = 0; i < 11; ++i) ASSERT_EQ(::unlink(v.Path("f" + std::to_string(i)).c_str()), 0);
  FsyncOne(v.Path("marker"));
  EXPECT_GT(DiskUsage(v.image()), 90ull << 20);

  auto trim = v.Qcfs("trim --json " + v.mnt());
  ASSERT_EQ(trim.exit_code, 0) << trim.output;
  auto j = nlohmann::json::parse(trim.output);
  EXPECT_GT(j["trimmed_bytes"].get<uint64_t>(), 512ull << 20) << trim.output;
  const uint64_t trimmed = DiskUsage(v.image());
  EXPECT_LT(trimmed, 24ull << 20) << "image holds " << trimmed << " bytes after trim (was " << full << ")";
  EXPECT_EQ(Sha(v.Path("f11")), kept);

  // The human form names the mountpoint and the amount.
  auto again = v.Qcfs("trim " + v.mnt());
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("trimmed"), std::string::npos) << again.output;

  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  EXPECT_EQ(Sha(v.Path("f11")), kept);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(Trim, DiscardReturnsSpaceAsFilesAreDeleted) {
  MountedVolume v(MountedVolume::Options{.size = 1ull << 30});  // discard is the default
  WriteRandom(v.Path("big"), 96);
  FsyncOne(v.Path("big"));
  EXPECT_GT(DiskUsage(v.image()), 90ull << 20);
  ASSERT_EQ(::unlink(v.Path("big").c_str()), 0);
  FsyncOne(v.Path("marker"));
  EXPECT_LT(DiskUsage(v.image()), 24ull << 20);
}

TEST(Trim, WorksOnAnUnmountedImageAndRefusesADirectory) {
  MountedVolume v;
  WriteRandom(v.Path("a"), 4);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto r = v.Qcfs("trim " + v.image());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  auto d = v.Qcfs("trim " + v.dir().path());
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_NE(d.output.find("not a mounted QCFS volume"), std::string::npos) << d.output;
}

TEST(Resize, GrowsAnImageOnlineThenOffline) {
  MountedVolume v(MountedVolume::Options{.size = 128ull << 20});
  const uint64_t before = TotalBytes(v.mnt());
  EXPECT_LE(before, 128ull << 20);
  // 160 MiB does not fit yet.
  auto full = Shell("head -c 160M /dev/urandom > " + v.Path("too-big") + " && sync " + v.Path("too-big"));
  EXPECT_NE(full.exit_code, 0) << "160 MiB fit in a 128 MiB volume";
  ASSERT_EQ(::unlink(v.Path("too-big").c_str()), 0);
  FsyncOne(v.Path("marker"));

  // Online: the image file is extended and df sees the new size at once.
  auto grow = v.Qcfs("resize " + v.mnt() + " --size 384M");
  ASSERT_EQ(grow.exit_code, 0) << grow.output;
  EXPECT_NE(grow.output.find("grown from 128 MiB to 384 MiB"), std::string::npos) << grow.output;
  struct stat st {};
  ASSERT_EQ(::stat(v.image().c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 384ull << 20);
  const uint64_t online = TotalBytes(v.mnt());
  EXPECT_GT(online, before + (250ull << 20));
  WriteRandom(v.Path("now-fits"), 160);
  const std::string sha = Sha(v.Path("now-fits"));
  ASSERT_EQ(v.Unmount().exit_code, 0);

  // Offline, relative, and a shrink is refused with a clear error.
  auto more = v.Qcfs("resize " + v.image() + " --size +128M");
  ASSERT_EQ(more.exit_code, 0) << more.output;
  auto shrink = v.Qcfs("resize " + v.image() + " --size 64M");
  EXPECT_EQ(shrink.exit_code, 1) << shrink.output;
  EXPECT_NE(shrink.output.find("cannot shrink"), std::string::npos) << shrink.output;
  // Nothing to do when the device has not grown.
  auto same = v.Qcfs("resize " + v.image());
  EXPECT_EQ(same.exit_code, 0) << same.output;
  EXPECT_NE(same.output.find("nothing to grow"), std::string::npos) << same.output;

  ASSERT_EQ(v.Mount().exit_code, 0);
  EXPECT_GT(TotalBytes(v.mnt()), online + (100ull << 20));
  EXPECT_EQ(Sha(v.Path("now-fits")), sha);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(Resize, UsesAnImageExtendedBeneathIt) {
  MountedVolume v(MountedVolume::Options{.size = 128ull << 20});
  // Someone grew the file (as a partition grows); resize without --size uses it.
  ASSERT_EQ(Shell("truncate -s 256M " + v.image()).exit_code, 0);
  auto grow = v.Qcfs("resize --json " + v.image());
  ASSERT_EQ(grow.exit_code, 0) << grow.output;
  auto j = nlohmann::json::parse(grow.output);
  EXPECT_EQ(j["new_bytes"].get<uint64_t>(), 256ull << 20) << grow.output;
  EXPECT_GT(TotalBytes(v.mnt()), 200ull << 20);
}

// Detaches a second mountpoint whatever happens to the test (before the
// temp dir holding it is removed).
struct DetachOnExit {
  std::string mnt;
  ~DetachOnExit() { Shell("fusermount3 -u -z " + mnt + " 2>/dev/null"); }
};

// A volume is its image file: a copy is a second, complete volume, and a
// moved image mounts from its new path.
TEST(SelfContained, CopiedAndMovedImagesMountWithTheirData) {
  MountedVolume v;
  WriteRandom(v.Path("data"), 6);
  ASSERT_EQ(Shell("mkdir " + v.Path("dir") + " && echo hello > " + v.Path("dir/hello")).exit_code, 0);
  const std::string sha = Sha(v.Path("data"));
  ASSERT_EQ(v.Unmount().exit_code, 0);
  // Nothing beside the image: no metadata directory or sidecar file.
  auto ls = Shell("ls -A " + v.dir().path() + " | grep '^vol.img'");
  EXPECT_EQ(ls.output, "vol.img\n");

  const std::string copy = v.dir().Join("copy.img");
  ASSERT_EQ(Shell("cp --sparse=always " + v.image() + " " + copy).exit_code, 0);
  // The original moves away and back: it mounts from wherever it is.
  const std::string moved_dir = v.dir().Join("elsewhere");
  ASSERT_EQ(Shell("mkdir " + moved_dir + " && mv " + v.image() + " " + moved_dir + "/").exit_code, 0);
  const std::string moved = moved_dir + "/vol.img";
  const std::string mnt2 = v.dir().Join("mnt2");
  ASSERT_EQ(Shell("mkdir " + mnt2).exit_code, 0);
  DetachOnExit guard{mnt2};
  auto m = v.Qcfs("mount " + moved + " " + mnt2);
  ASSERT_EQ(m.exit_code, 0) << m.output;
  EXPECT_EQ(Sha(mnt2 + "/data"), sha);
  EXPECT_EQ(Shell("cat " + mnt2 + "/dir/hello").output, "hello\n");
  ASSERT_EQ(Shell("echo changed > " + mnt2 + "/dir/hello").exit_code, 0);
  auto u = v.Qcfs("umount " + mnt2);
  ASSERT_EQ(u.exit_code, 0) << u.output;
  ASSERT_EQ(Shell("mv " + moved + " " + v.image()).exit_code, 0);

  // The copy is independent of what the original went through.
  auto mc = v.Qcfs("mount " + copy + " " + mnt2);
  ASSERT_EQ(mc.exit_code, 0) << mc.output;
  EXPECT_EQ(Sha(mnt2 + "/data"), sha);
  EXPECT_EQ(Shell("cat " + mnt2 + "/dir/hello").output, "hello\n");
  ASSERT_EQ(v.Qcfs("umount " + mnt2).exit_code, 0);

  ASSERT_EQ(v.Mount().exit_code, 0);
  EXPECT_EQ(Shell("cat " + v.Path("dir/hello")).output, "changed\n");
  ASSERT_EQ(v.Unmount().exit_code, 0);
  EXPECT_EQ(v.Qcfs("check " + copy).exit_code, 0);
  EXPECT_EQ(v.Qcfs("check " + v.image()).exit_code, 0);
}

// ---------------------------------------------------------------- dirty page limit

// The mount's backing device info knob, e.g. "max_ratio" ("" if unreadable).
std::string BdiKnob(const std::string& mnt, const std::string& knob) {
  struct stat st {};
  if (::stat(mnt.c_str(), &st) != 0) return "";
  std::ifstream in("/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev)) +
                   "/" + knob);
  std::string v;
  in >> v;
  return v;
}

// Volumes with more room than the kernel may cache (the system's dirty
// threshold), so that the space guard leaves the daemon's own limit alone.
constexpr uint64_t kRoomy = 64ull << 30;  // a sparse image

TEST(DirtyLimit, StreamsUntilScatteredWritesArriveThenAbsorbsThem) {
  MountedVolume v(MountedVolume::Options{.size = kRoomy});
  ASSERT_EQ(BdiKnob(v.mnt(), "strict_limit"), "1");
  ASSERT_EQ(BdiKnob(v.mnt(), "max_ratio"), "10");
  // O_DIRECT writes reach the daemon as they are made: 2,000 scattered 4 KiB
  // pieces look like the kernel writing back random overwrites.
  const std::string f = v.Path("scattered");
  int fd = ::open(f.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0644);
  ASSERT_GE(fd, 0);
  void* buf = nullptr;
  ASSERT_EQ(::posix_memalign(&buf, 4096, 4096), 0);
  std::memset(buf, 0x5a, 4096);
  for (int i = 0; i < 2000; ++i) {
    const off_t off = static_cast<off_t>((i * 7919) % 4096) * 4096;
    ASSERT_EQ(::pwrite(fd, buf, 4096, off), 4096) << i;
  }
  std::free(buf);
  EXPECT_EQ(::fsync(fd), 0);
  ::close(fd);
  EXPECT_EQ(BdiKnob(v.mnt(), "strict_limit"), "0");
  EXPECT_EQ(BdiKnob(v.mnt(), "max_ratio"), "100");
}

// A FUSE mount reads ahead 128 KiB unless told otherwise; a cold
// sequential read then waits on the device for each small piece.
TEST(Readahead, MountReadsAheadAMebibyteUnlessTold) {
  MountedVolume plain;
  EXPECT_EQ(BdiKnob(plain.mnt(), "read_ahead_kb"), "1024");
  MountedVolume larger(MountedVolume::Options{.mount_args = "-o readahead=2M"});
  EXPECT_EQ(BdiKnob(larger.mnt(), "read_ahead_kb"), "2048");
  MountedVolume kernels(MountedVolume::Options{.mount_args = "-o readahead=0"});
  EXPECT_EQ(BdiKnob(kernels.mnt(), "read_ahead_kb"), "128");
}

TEST(DirtyLimit, SystemAndFuseLimitsAreFixed) {
  MountedVolume system(MountedVolume::Options{.size = kRoomy, .mount_args = "-o dirty_limit=system"});
  EXPECT_EQ(BdiKnob(system.mnt(), "strict_limit"), "0");
  EXPECT_EQ(BdiKnob(system.mnt(), "max_ratio"), "100");
  MountedVolume fuse(MountedVolume::Options{.size = kRoomy, .mount_args = "-o dirty_limit=fuse"});
  EXPECT_EQ(BdiKnob(fuse.mnt(), "strict_limit"), "1");
  EXPECT_EQ(BdiKnob(fuse.mnt(), "max_ratio"), "1");
}

// A volume with less room than the kernel may cache for it (here the
// system's whole dirty threshold, several GiB on any machine that runs
// this) gets a strict limit of half its room from the space guard, set
// before the first write can arrive.
TEST(DirtyLimit, AVolumeSmallerThanTheKernelsCacheIsCappedAtHalfItsRoom) {
  MountedVolume small(MountedVolume::Options{.size = 1ull << 30, .mount_args = "-o dirty_limit=system"});
  struct stat st {};
  ASSERT_EQ(::stat(small.Path(".").c_str(), &st), 0);  // a request: FUSE_INIT has been answered
  EXPECT_EQ(BdiKnob(small.mnt(), "strict_limit"), "1");
  const uint64_t cap = std::stoull("0" + BdiKnob(small.mnt(), "max_bytes"));
  EXPECT_GT(cap, 256ull << 20);
  EXPECT_LE(cap, 512ull << 20);
}

}  // namespace
}  // namespace qcfs
