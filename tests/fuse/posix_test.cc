// POSIX semantics through a real FUSE mount, driven with system calls.
#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "qcfs/core/unique_fd.h"
#include "tests/testutil/mounted_volume.h"

namespace qcfs {
namespace {

using testing::ListDir;
using testing::MountedVolume;
using testing::RandomBytes;
using testing::ReadFile;
using testing::WriteFile;

nlohmann::json Info(MountedVolume& v) {
  auto r = v.Qcfs("info --json " + v.mnt());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output, nullptr, false);
}

TEST(Posix, WriteReadAndPersistAcrossRemount) {
  MountedVolume v;
  std::string data = RandomBytes(3 << 20, 1);
  WriteFile(v.Path("a.bin"), data);
  ASSERT_EQ(::mkdir(v.Path("dir").c_str(), 0750), 0);
  WriteFile(v.Path("dir/small.txt"), "hello\n");
  EXPECT_EQ(ReadFile(v.Path("a.bin")), data);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  EXPECT_EQ(ReadFile(v.Path("a.bin")), data);
  EXPECT_EQ(ReadFile(v.Path("dir/small.txt")), "hello\n");
  struct stat st {};
  ASSERT_EQ(::stat(v.Path("dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(ListDir(v.mnt()), (std::set<std::string>{".", "..", "a.bin", "dir"}));
}

TEST(Posix, OpenWithTruncDiscardsTheOldContent) {
  MountedVolume v;
  WriteFile(v.Path("f"), RandomBytes(285213, 8));
  WriteFile(v.Path("f"), "short");  // open(O_WRONLY | O_TRUNC)
  EXPECT_EQ(ReadFile(v.Path("f")), "short");
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  EXPECT_EQ(ReadFile(v.Path("f")), "short");
}

TEST(Posix, HardLinksShareContentAndCountLinks) {
  MountedVolume v;
  WriteFile(v.Path("a"), "linked");
  ASSERT_EQ(::link(v.Path("a").c_str(), v.Path("b").c_str()), 0);
  struct stat st {};
  ASSERT_EQ(::stat(v.Path("a").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  ASSERT_EQ(::unlink(v.Path("a").c_str()), 0);
  ASSERT_EQ(::stat(v.Path("b").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(ReadFile(v.Path("b")), "linked");
}

TEST(Posix, RenameWithNoreplaceAndExchange) {
  MountedVolume v;
  WriteFile(v.Path("a"), "A");
  WriteFile(v.Path("b"), "B");
  auto renameat2 = [&](const char* from, const char* to, unsigned flags) {
    return ::syscall(SYS_renameat2, AT_FDCWD, v.Path(from).c_str(), AT_FDCWD, v.Path(to).c_str(), flags);
  };
  EXPECT_EQ(renameat2("a", "b", RENAME_NOREPLACE), -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(renameat2("a", "b", RENAME_EXCHANGE), 0);
  EXPECT_EQ(ReadFile(v.Path("a")), "B");
  EXPECT_EQ(ReadFile(v.Path("b")), "A");
  ASSERT_EQ(::rename(v.Path("a").c_str(), v.Path("b").c_str()), 0);
  EXPECT_EQ(ReadFile(v.Path("b")), "B");
  EXPECT_EQ(::access(v.Path("a").c_str(), F_OK), -1);
  ASSERT_EQ(::mkdir(v.Path("d").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(v.Path("d/sub").c_str(), 0755), 0);
  EXPECT_EQ(::rename(v.Path("d").c_str(), v.Path("d/sub/x").c_str()), -1);
  EXPECT_EQ(errno, EINVAL);
}

TEST(Posix, UnlinkedOpenFileKeepsItsDataUntilClose) {
  MountedVolume v;
  std::string data = RandomBytes(1 << 20, 2);
  WriteFile(v.Path("f"), data);
  UniqueFd fd(::open(v.Path("f").c_str(), O_RDONLY));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(::unlink(v.Path("f").c_str()), 0);
  std::string back(data.size(), '\0');
  ASSERT_EQ(::pread(fd.get(), back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, data);
  fd.reset();
  ASSERT_EQ(v.Qcfs("info " + v.mnt()).exit_code, 0);
  nlohmann::json info = Info(v);
  EXPECT_EQ(info["logical_bytes"], 0) << info.dump();
}

TEST(Posix, SymlinksFifosAndDeviceNodes) {
  MountedVolume v;
  ASSERT_EQ(::symlink("target/path", v.Path("link").c_str()), 0);
  char buf[64] = {};
  ASSERT_EQ(::readlink(v.Path("link").c_str(), buf, sizeof buf), 11);
  EXPECT_STREQ(buf, "target/path");
  ASSERT_EQ(::mkfifo(v.Path("fifo").c_str(), 0600), 0);
  ASSERT_EQ(::mknod(v.Path("null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  struct stat st {};
  ASSERT_EQ(::lstat(v.Path("fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ASSERT_EQ(::lstat(v.Path("null").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  ASSERT_EQ(::lstat(v.Path("link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
}

TEST(Posix, ExtendedAttributes) {
  MountedVolume v;
  WriteFile(v.Path("f"), "x");
  std::string f = v.Path("f");
  ASSERT_EQ(::setxattr(f.c_str(), "user.color", "blue", 4, 0), 0);
  ASSERT_EQ(::setxattr(f.c_str(), "trusted.level", "7", 1, 0), 0);
  ASSERT_EQ(::setxattr(f.c_str(), "security.label", "s0", 2, 0), 0);
  char buf[256] = {};
  ASSERT_EQ(::getxattr(f.c_str(), "user.color", buf, sizeof buf), 4);
  EXPECT_EQ(std::string(buf, 4), "blue");
  EXPECT_EQ(::getxattr(f.c_str(), "user.none", buf, sizeof buf), -1);
  EXPECT_EQ(errno, ENODATA);
  EXPECT_EQ(::setxattr(f.c_str(), "user.color", "red", 3, XATTR_CREATE), -1);
  EXPECT_EQ(errno, EEXIST);
  ssize_t n = ::listxattr(f.c_str(), buf, sizeof buf);
  ASSERT_GT(n, 0);
  std::set<std::string> names;
  for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(buf + i)) + 1) names.insert(buf + i);
  EXPECT_TRUE(names.count("user.color") && names.count("trusted.level") && names.count("security.label"));
  ASSERT_EQ(::removexattr(f.c_str(), "user.color"), 0);
  EXPECT_EQ(::getxattr(f.c_str(), "user.color", buf, sizeof buf), -1);
}

// cp -a sets a copy's mode with an access ACL (setxattr), not with chmod.
TEST(Posix, CopyWithCpAKeepsModes) {
  MountedVolume v;
  testing::TempDir src;
  ASSERT_EQ(::mkdir(src.Join("d").c_str(), 0750), 0);
  WriteFile(src.Join("d/run"), "#!/bin/sh\n");
  ASSERT_EQ(::chmod(src.Join("d/run").c_str(), 0755), 0);
  WriteFile(src.Join("d/secret"), "s");
  ASSERT_EQ(::chmod(src.Join("d/secret").c_str(), 0600), 0);
  auto cp = testing::Shell("cp -a " + src.Join("d") + " " + v.Path("d"));
  ASSERT_EQ(cp.exit_code, 0) << cp.output;
  for (auto [name, mode] : {std::pair{"d", 0750u}, {"d/run", 0755u}, {"d/secret", 0600u}}) {
    struct stat st {};
    ASSERT_EQ(::stat(v.Path(name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_mode & 07777, mode) << name;
  }
  EXPECT_EQ(::getxattr(v.Path("d/run").c_str(), "system.posix_acl_access", nullptr, 0), -1);
  EXPECT_EQ(errno, ENODATA);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  struct stat st {};
  ASSERT_EQ(::stat(v.Path("d/run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

TEST(Posix, TruncateZeroesTheTailAndHolesReadAsZeros) {
  MountedVolume v;
  std::string data = RandomBytes(200000, 3);
  WriteFile(v.Path("f"), data);
  ASSERT_EQ(::truncate(v.Path("f").c_str(), 1000), 0);
  ASSERT_EQ(::truncate(v.Path("f").c_str(), 300000), 0);
  std::string expect = data.substr(0, 1000) + std::string(299000, '\0');
  EXPECT_EQ(ReadFile(v.Path("f")), expect);
  struct stat st {};
  ASSERT_EQ(::stat(v.Path("f").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 300000);
  EXPECT_LE(st.st_blocks, 128) << "a hole takes no space";
}

TEST(Posix, PunchHoleFreesSpace) {
  MountedVolume v;
  std::string data = RandomBytes(4 << 20, 4);
  WriteFile(v.Path("f"), data);
  ASSERT_EQ(v.Unmount().exit_code, 0);  // flushed and reopened: the data is on the device
  ASSERT_EQ(v.Mount().exit_code, 0);
  uint64_t before = Info(v)["stored_bytes"];
  UniqueFd fd(::open(v.Path("f").c_str(), O_RDWR));
  ASSERT_EQ(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1 << 20, 2 << 20), 0);
  ASSERT_EQ(::fsync(fd.get()), 0);
  fd.reset();
  uint64_t after = Info(v)["stored_bytes"];
  EXPECT_LT(after, before - (3 << 20) / 2);
  data.replace(1 << 20, 2 << 20, std::string(2 << 20, '\0'));
  EXPECT_EQ(ReadFile(v.Path("f")), data);
}

TEST(Posix, FilesLargerThanFourGiB) {
  MountedVolume v;
  UniqueFd fd(::open(v.Path("big").c_str(), O_CREAT | O_RDWR, 0644));
  const off_t far = (5ll << 30) + 12345;
  ASSERT_EQ(::pwrite(fd.get(), "tail", 4, far), 4);
  ASSERT_EQ(::fsync(fd.get()), 0);
  char buf[8] = {};
  ASSERT_EQ(::pread(fd.get(), buf, 8, far - 4), 8);
  EXPECT_EQ(std::string(buf, 8), std::string(4, '\0') + "tail");
  struct stat st {};
  ASSERT_EQ(::fstat(fd.get(), &st), 0);
  EXPECT_EQ(st.st_size, far + 4);
}

TEST(Posix, AppendFromTwoDescriptors) {
  MountedVolume v;
  UniqueFd a(::open(v.Path("log").c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644));
  UniqueFd b(::open(v.Path("log").c_str(), O_WRONLY | O_APPEND));
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(::write(a.get(), "a\n", 2), 2);
    ASSERT_EQ(::write(b.get(), "b\n", 2), 2);
  }
  a.reset();
  b.reset();
  std::string log = ReadFile(v.Path("log"));
  EXPECT_EQ(log.size(), 200u);
  EXPECT_EQ(std::count(log.begin(), log.end(), 'a'), 50);
}

TEST(Posix, SharedMmapWritesReachTheFile) {
  MountedVolume v;
  WriteFile(v.Path("m"), std::string(1 << 20, 'x'));
  {
    UniqueFd fd(::open(v.Path("m").c_str(), O_RDWR));
    void* p = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(p, MAP_FAILED);
    std::memcpy(static_cast<char*>(p) + 4096, "mapped", 6);
    ASSERT_EQ(::msync(p, 1 << 20, MS_SYNC), 0);
    ::munmap(p, 1 << 20);
  }
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  std::string back = ReadFile(v.Path("m"));
  EXPECT_EQ(back.substr(4096, 6), "mapped");
  EXPECT_EQ(back[0], 'x');
}

// A page written back from a shared mapping of an O_APPEND descriptor goes
// to its own offset: O_APPEND moves write(2), not writeback.
TEST(Posix, MmapWritebackThroughAnAppendHandleWritesAtItsOffset) {
  MountedVolume v;
  WriteFile(v.Path("m"), std::string(1 << 20, 'x'));
  {
    UniqueFd fd(::open(v.Path("m").c_str(), O_RDWR | O_APPEND));
    void* p = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(p, MAP_FAILED);
    std::memcpy(static_cast<char*>(p) + 8192, "mapped", 6);
    ASSERT_EQ(::msync(p, 1 << 20, MS_SYNC), 0);
    ::munmap(p, 1 << 20);
    ASSERT_EQ(::write(fd.get(), "end", 3), 3);  // and write(2) still appends
  }
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  std::string back = ReadFile(v.Path("m"));
  ASSERT_EQ(back.size(), (1u << 20) + 3);
  EXPECT_EQ(back.substr(8192, 6), "mapped");
  EXPECT_EQ(back.substr(1 << 20), "end");
  EXPECT_EQ(back[8191], 'x');
}

TEST(Posix, TimestampsFollowChanges) {
  MountedVolume v;
  WriteFile(v.Path("f"), "1");
  struct stat a {}, b {};
  ASSERT_EQ(::stat(v.Path("f").c_str(), &a), 0);
  ::usleep(20000);
  WriteFile(v.Path("f"), "22");
  ASSERT_EQ(::stat(v.Path("f").c_str(), &b), 0);
  EXPECT_GT(b.st_mtim.tv_sec * 1000000000ll + b.st_mtim.tv_nsec, a.st_mtim.tv_sec * 1000000000ll + a.st_mtim.tv_nsec);
  timespec times[2] = {{1000, 0}, {2000, 500}};
  ASSERT_EQ(::utimensat(AT_FDCWD, v.Path("f").c_str(), times, 0), 0);
  ASSERT_EQ(::stat(v.Path("f").c_str(), &b), 0);
  EXPECT_EQ(b.st_atim.tv_sec, 1000);
  EXPECT_EQ(b.st_mtim.tv_sec, 2000);
  EXPECT_EQ(b.st_mtim.tv_nsec, 500);
  ::usleep(20000);
  ASSERT_EQ(::chmod(v.Path("f").c_str(), 0600), 0);
  struct stat c {};
  ASSERT_EQ(::stat(v.Path("f").c_str(), &c), 0);
  EXPECT_GT(c.st_ctim.tv_sec * 1000000000ll + c.st_ctim.tv_nsec, b.st_ctim.tv_sec * 1000000000ll + b.st_ctim.tv_nsec);
}

TEST(Posix, StatfsShowsRealSpace) {
  MountedVolume v;
  struct statvfs before {};
  ASSERT_EQ(::statvfs(v.mnt().c_str(), &before), 0);
  EXPECT_GT(before.f_blocks * before.f_frsize, 900ull << 20);
  WriteFile(v.Path("f"), RandomBytes(32 << 20, 5));
  ASSERT_EQ(v.Qcfs("umount " + v.mnt()).exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  struct statvfs after {};
  ASSERT_EQ(::statvfs(v.mnt().c_str(), &after), 0);
  EXPECT_LT(after.f_bfree * after.f_frsize + (30 << 20), before.f_bfree * before.f_frsize);
}

TEST(Posix, DirectoryWithManyEntries) {
  MountedVolume v;
  ASSERT_EQ(::mkdir(v.Path("many").c_str(), 0755), 0);
  const int kCount = 100000;
  for (int i = 0; i < kCount; ++i) {
    std::string p = v.Path("many/f" + std::to_string(i));
    ASSERT_EQ(::mknod(p.c_str(), S_IFREG | 0644, 0), 0) << i;
  }
  EXPECT_EQ(ListDir(v.Path("many")).size(), static_cast<size_t>(kCount + 2));
  struct stat st {};
  ASSERT_EQ(::stat(v.Path("many/f99999").c_str(), &st), 0);
}

TEST(Posix, ReadOnlyMountRefusesWrites) {
  MountedVolume v;
  WriteFile(v.Path("f"), "data");
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Qcfs("mount -o ro " + v.image() + " " + v.mnt()).exit_code, 0);
  EXPECT_EQ(ReadFile(v.Path("f")), "data");
  EXPECT_EQ(::open(v.Path("g").c_str(), O_CREAT | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, EROFS);
  ASSERT_EQ(v.Qcfs("umount " + v.mnt()).exit_code, 0);
}

TEST(Posix, SigtermUnmountsCleanly) {
  MountedVolume v;
  std::string data = RandomBytes(2 << 20, 6);
  WriteFile(v.Path("f"), data);
  pid_t pid = v.DaemonPid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  for (int i = 0; i < 500 && ::kill(pid, 0) == 0; ++i) ::usleep(20000);
  testing::Shell("fusermount3 -u -z " + v.mnt() + " 2>/dev/null");
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 0) << check.output;
  ASSERT_EQ(v.Mount().exit_code, 0);
  EXPECT_EQ(ReadFile(v.Path("f")), data);
}

TEST(Posix, InfoOnTheMountAsksTheDaemon) {
  MountedVolume v;
  std::string data = RandomBytes(1 << 20, 7, true);
  WriteFile(v.Path("a"), data);
  WriteFile(v.Path("b"), data);
  ASSERT_EQ(v.Qcfs("umount " + v.mnt()).exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  nlohmann::json info = Info(v);
  EXPECT_EQ(info["logical_bytes"], 2 << 20);
  EXPECT_EQ(info["unique_bytes"], 1 << 20);
  EXPECT_GT(info["compression_ratio"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(info["dedup_ratio"].get<double>(), 2.0);
  auto text = v.Qcfs("info " + v.mnt());
  EXPECT_NE(text.output.find("Dedup 2.00x"), std::string::npos) << text.output;
  // Only root and the owner may use the control channel.
  auto rec = v.DaemonPid();
  EXPECT_GT(rec, 0);
}

// ---------------------------------------------------------------- permission checks

// The mount's file-system options as the kernel shows them.
std::string SuperOptions(const std::string& mnt) {
  auto r = testing::Shell("findmnt -n -o FS-OPTIONS --mountpoint " + mnt);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("user_id="), std::string::npos) << r.output;
  return r.output;
}

TEST(Permissions, APrivateRootMountAnswersAccessItself) {
  MountedVolume v(MountedVolume::Options{.mount_args = "-o private"});
  // Only root's processes may enter: the kernel is not asked to check.
  EXPECT_EQ(SuperOptions(v.mnt()).find("default_permissions"), std::string::npos) << SuperOptions(v.mnt());
  EXPECT_EQ(SuperOptions(v.mnt()).find("allow_other"), std::string::npos) << SuperOptions(v.mnt());
  WriteFile(v.Path("plain"), "data");
  ASSERT_EQ(::chmod(v.Path("plain").c_str(), 0644), 0);
  WriteFile(v.Path("locked"), "data");
  ASSERT_EQ(::chmod(v.Path("locked").c_str(), 0), 0);
  WriteFile(v.Path("tool"), "#!/bin/sh\nexit 7\n");
  ASSERT_EQ(::chmod(v.Path("tool").c_str(), 0700), 0);

  // Root reads and writes anything, executes only what someone may execute.
  EXPECT_EQ(::access(v.Path("locked").c_str(), R_OK | W_OK), 0);
  EXPECT_EQ(::access(v.Path("plain").c_str(), X_OK), -1);
  EXPECT_EQ(errno, EACCES);
  EXPECT_EQ(::access(v.Path("tool").c_str(), X_OK), 0);
  EXPECT_EQ(testing::Shell(v.Path("plain")).exit_code, 126);  // the kernel refuses to execute it
  EXPECT_EQ(testing::Shell(v.Path("tool")).exit_code, 7);
  WriteFile(v.Path("locked"), "root writes");
  EXPECT_EQ(ReadFile(v.Path("locked")), "root writes");

  // A snapshot is read-only, and access(2) says so.
  ASSERT_EQ(v.Qcfs("snapshot create " + v.mnt() + " s").exit_code, 0);
  const std::string frozen = v.Path(".snapshots/s/plain");
  EXPECT_EQ(::access(frozen.c_str(), R_OK), 0);
  EXPECT_EQ(::access(frozen.c_str(), W_OK), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::access(v.Path(".snapshots/s").c_str(), W_OK), -1);
  EXPECT_EQ(errno, EROFS);
}

TEST(Permissions, TheKernelChecksWhereOthersMayEnterOrWhenAsked) {
  MountedVolume shared(MountedVolume::Options{.mount_args = "-o allow_other"});
  EXPECT_NE(SuperOptions(shared.mnt()).find("default_permissions"), std::string::npos);
  MountedVolume asked(MountedVolume::Options{.mount_args = "-o private,default_permissions"});
  EXPECT_NE(SuperOptions(asked.mnt()).find("default_permissions"), std::string::npos);
  EXPECT_EQ(SuperOptions(asked.mnt()).find("allow_other"), std::string::npos);
}

// Mounted by root, a volume is a system file system: every user may use it,
// the kernel checking the mode bits and ACLs, as on ext4.
TEST(Permissions, RootMountsForEveryUserByDefault) {
  MountedVolume v;
  const std::string options = SuperOptions(v.mnt());
  EXPECT_NE(options.find("allow_other"), std::string::npos) << options;
  EXPECT_NE(options.find("default_permissions"), std::string::npos) << options;
  ASSERT_EQ(::chmod(v.dir().path().c_str(), 0755), 0);
  WriteFile(v.Path("open"), "for all");
  ASSERT_EQ(::chmod(v.Path("open").c_str(), 0644), 0);
  WriteFile(v.Path("closed"), "root only");
  ASSERT_EQ(::chmod(v.Path("closed").c_str(), 0600), 0);
  const std::string as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups -- ";
  auto r = testing::Shell(as_nobody + "cat " + v.Path("open"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "for all");
  r = testing::Shell(as_nobody + "cat " + v.Path("closed"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("Permission denied"), std::string::npos) << r.output;
  // A private mount refuses them at the door.
  ASSERT_EQ(v.Unmount().exit_code, 0);
  MountedVolume priv(MountedVolume::Options{.mount_args = "-o private"});
  ASSERT_EQ(::chmod(priv.dir().path().c_str(), 0755), 0);
  r = testing::Shell(as_nobody + "ls " + priv.mnt());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("Permission denied"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace qcfs
