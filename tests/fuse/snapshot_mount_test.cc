// Snapshots through a real mount and the qcfs CLI.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/testutil/mounted_volume.h"

namespace qcfs {
namespace {

using testing::ListDir;
using testing::MountedVolume;
using testing::RandomBytes;
using testing::ReadFile;
using testing::WriteFile;

TEST(SnapshotMount, BrowseReadOnlyAndHidden) {
  MountedVolume v;
  ASSERT_EQ(::mkdir(v.Path("docs").c_str(), 0755), 0);
  WriteFile(v.Path("docs/a.txt"), "first");
  auto c = v.Qcfs("snapshot create " + v.mnt() + " monday");
  ASSERT_EQ(c.exit_code, 0) << c.output;
  WriteFile(v.Path("docs/a.txt"), "second");
  WriteFile(v.Path("docs/b.txt"), "new");
  EXPECT_EQ(ReadFile(v.Path(".snapshots/monday/docs/a.txt")), "first");
  EXPECT_EQ(ReadFile(v.Path("docs/a.txt")), "second");
  EXPECT_EQ(::access(v.Path(".snapshots/monday/docs/b.txt").c_str(), F_OK), -1);
  EXPECT_EQ(ListDir(v.Path(".snapshots")), (std::set<std::string>{".", "..", "monday"}));
  EXPECT_FALSE(ListDir(v.mnt()).count(".snapshots")) << "hidden from the root's listing";
  // Read-only.
  EXPECT_EQ(::open(v.Path(".snapshots/monday/docs/a.txt").c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::mkdir(v.Path(".snapshots/monday/x").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::unlink(v.Path(".snapshots/monday/docs/a.txt").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::mkdir(v.Path(".snapshots/new").c_str(), 0755), -1);
  // Visible when asked for.
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Qcfs("mount -o snapdir=visible " + v.image() + " " + v.mnt()).exit_code, 0);
  EXPECT_TRUE(ListDir(v.mnt()).count(".snapshots"));
  EXPECT_EQ(ReadFile(v.Path(".snapshots/monday/docs/a.txt")), "first");
  ASSERT_EQ(v.Qcfs("umount " + v.mnt()).exit_code, 0);
}

TEST(SnapshotMount, ListDiffRestoreDeleteFromTheCli) {
  MountedVolume v;
  std::string big = RandomBytes(2 << 20, 1);
  WriteFile(v.Path("big"), big);
  WriteFile(v.Path("small"), "s1");
  ASSERT_EQ(v.Qcfs("snapshot create " + v.mnt() + " before").exit_code, 0);
  WriteFile(v.Path("small"), "s2");
  ASSERT_EQ(::unlink(v.Path("big").c_str()), 0);
  WriteFile(v.Path("added"), "+");

  auto list = v.Qcfs("snapshot list --json " + v.mnt());
  ASSERT_EQ(list.exit_code, 0) << list.output;
  auto j = nlohmann::json::parse(list.output);
  ASSERT_EQ(j["snapshots"].size(), 1u);
  EXPECT_EQ(j["snapshots"][0]["name"], "before");
  EXPECT_GE(j["snapshots"][0]["logical_bytes"].get<uint64_t>(), 2u << 20);
  EXPECT_GE(j["snapshots"][0]["exclusive_bytes"].get<uint64_t>(), 2u << 20) << "big lives only in the snapshot";

  auto diff = v.Qcfs("snapshot diff " + v.mnt() + " before");
  ASSERT_EQ(diff.exit_code, 0) << diff.output;
  EXPECT_NE(diff.output.find("-  /big"), std::string::npos) << diff.output;
  EXPECT_NE(diff.output.find("+  /added"), std::string::npos) << diff.output;
  EXPECT_NE(diff.output.find("M  /small"), std::string::npos) << diff.output;

  // The kernel has "s2" cached; the restore must invalidate it.
  EXPECT_EQ(ReadFile(v.Path("small")), "s2");
  auto restore = v.Qcfs("snapshot restore " + v.mnt() + " before");
  ASSERT_EQ(restore.exit_code, 0) << restore.output;
  EXPECT_EQ(ReadFile(v.Path("small")), "s1");
  EXPECT_EQ(ReadFile(v.Path("big")), big);
  EXPECT_EQ(::access(v.Path("added").c_str(), F_OK), -1);
  j = nlohmann::json::parse(v.Qcfs("snapshot list --json " + v.mnt()).output);
  ASSERT_EQ(j["snapshots"].size(), 2u) << "the restore kept the tree it replaced";
  std::string saved = j["snapshots"][1]["name"];
  EXPECT_EQ(ReadFile(v.Path(".snapshots/" + saved + "/small")), "s2");

  ASSERT_EQ(v.Qcfs("snapshot delete " + v.mnt() + " " + saved).exit_code, 0);
  ASSERT_EQ(v.Qcfs("snapshot delete " + v.mnt() + " before").exit_code, 0);
  EXPECT_EQ(::access(v.Path(".snapshots/before").c_str(), F_OK), -1);
  auto missing = v.Qcfs("snapshot delete " + v.mnt() + " before");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("no snapshot named 'before'"), std::string::npos) << missing.output;
  auto bad = v.Qcfs("snapshot create " + v.mnt() + " a/b");
  EXPECT_EQ(bad.exit_code, 1);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(SnapshotMount, SnapshotHoldsWritesTheKernelStillBuffers) {
  MountedVolume v;
  // Written and neither closed nor synced: with the writeback cache these
  // bytes are still in the kernel's page cache when the snapshot is asked for.
  const std::string data = RandomBytes(1 << 20, 7);
  int fd = ::open(v.Path("open.bin").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  auto c = v.Qcfs("snapshot create " + v.mnt() + " held");
  EXPECT_EQ(c.exit_code, 0) << c.output;
  ::close(fd);
  EXPECT_EQ(ReadFile(v.Path(".snapshots/held/open.bin")), data);
  // A restore replaces a file the kernel holds in its cache: the restored
  // size and bytes are what a new open sees.
  WriteFile(v.Path("open.bin"), "short");
  EXPECT_EQ(ReadFile(v.Path("open.bin")), "short");
  auto r = v.Qcfs("snapshot restore " + v.mnt() + " held");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  struct stat st {};
  ASSERT_EQ(::stat(v.Path("open.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));
  EXPECT_EQ(ReadFile(v.Path("open.bin")), data);
}

TEST(SnapshotMount, SnapshotSurvivesAKilledDaemonAndWorksUnmounted) {
  MountedVolume v;
  WriteFile(v.Path("f"), "kept");
  ASSERT_EQ(v.Qcfs("snapshot create " + v.mnt() + " safe").exit_code, 0);
  WriteFile(v.Path("f"), "changed");
  v.KillDaemon();
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 0) << check.output;
  // The same commands on the unmounted device.
  auto list = v.Qcfs("snapshot list " + v.image());
  EXPECT_NE(list.output.find("safe"), std::string::npos) << list.output;
  ASSERT_EQ(v.Qcfs("snapshot create " + v.image() + " offline").exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  EXPECT_EQ(ReadFile(v.Path(".snapshots/safe/f")), "kept");
  EXPECT_TRUE(ListDir(v.Path(".snapshots")).count("offline"));
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Qcfs("snapshot delete " + v.image() + " offline").exit_code, 0);
  EXPECT_EQ(v.Qcfs("snapshot list " + v.image()).output.find("offline"), std::string::npos);
}

}  // namespace
}  // namespace qcfs
