// POSIX ACLs on a mount in its default, multi-user mode (allow_other,
// default_permissions; with and without the writeback cache), compared case
// by case with ext4 (a loop-mounted image, or the temp dir when that is ext4)
// in the same test: setfacl and getfacl as root, then a probe as root or as a
// process of another uid and gid (setpriv). Each case runs in a fresh
// directory on both sides; what the probe printed must be the same on both,
// and what the case says ext4 does, so that a reference that ignores ACLs
// cannot pass it.
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/testutil/mounted_volume.h"

namespace qcfs {
namespace {

using testing::MountedVolume;
using testing::Shell;
using testing::TempDir;

constexpr long kExt4Magic = 0xEF53;

// An ext4 directory for reference: a loop-mounted image in a temp dir,
// unmounted at the end whatever happened; or the temp dir itself when it
// is on ext4. Empty path() when neither works.
class Ext4Reference {
 public:
  Ext4Reference() {
    const std::string img = dir_.Join("ext4.img"), mnt = dir_.Join("mnt");
    std::filesystem::create_directories(mnt);
    auto r = Shell("truncate -s 64M " + img + " && mkfs.ext4 -q -F " + img + " && mount -o loop " + img + " " + mnt);
    if (r.exit_code == 0) {
      mounted_ = mnt;
      path_ = mnt;
    } else if (struct statfs st {}; ::statfs(dir_.path().c_str(), &st) == 0 && st.f_type == kExt4Magic) {
      path_ = dir_.Join("ref");
      std::filesystem::create_directories(path_);
    }
    ::chmod(dir_.path().c_str(), 0755);  // other uids must reach it
  }
  ~Ext4Reference() {
    if (!mounted_.empty() && Shell("umount " + mounted_).exit_code != 0) Shell("umount -l " + mounted_);
  }
  const std::string& path() const { return path_; }

 private:
  TempDir dir_;
  std::string mounted_;
  std::string path_;
};

// Who runs a probe: root, or a process with these ids and no supplementary groups.
struct Who {
  int uid = 0;
  int gid = 0;
};
constexpr Who kRoot{0, 0};
constexpr Who kNobody{65534, 65534};
constexpr Who kOther{65533, 65533};           // neither named in an ACL nor in a file's group
constexpr Who kNobodyInGroup{65534, 65533};  // nobody, with group 65533

struct AclCase {
  const char* name;
  const char* setup;  // as root, umask 022, in the case's directory
  Who who;
  const char* probe;  // a shell command line (no single quotes)
  // Access probes print "allowed" or "denied" (the exit status of the probe);
  // text probes print what the command printed.
  bool text;
  const char* ext4;  // what ext4 gives
};

const AclCase kCases[] = {
    {"named user denied on a 644 file", "echo data > f; chmod 644 f; setfacl -m u:65534:--- f", kNobody, "cat f",
     false, "denied"},
    {"others still read it", "echo data > f; chmod 644 f; setfacl -m u:65534:--- f", kOther, "cat f", false,
     "allowed"},
    {"named user granted on a 600 file", "echo data > f; chmod 600 f; setfacl -m u:65534:r f", kNobody, "cat f",
     false, "allowed"},
    {"named user granted, not write", "echo data > f; chmod 600 f; setfacl -m u:65534:r f", kNobody, "echo x >> f",
     false, "denied"},
    {"named group granted write", "echo data > f; chmod 600 f; setfacl -m g:65533:rw f", kNobodyInGroup,
     "echo x >> f", false, "allowed"},
    {"mask limits a named user's write", "echo data > f; setfacl -m u:65534:rw f; setfacl -m m::r f", kNobody,
     "echo x >> f", false, "denied"},
    {"mask keeps a named user's read", "echo data > f; setfacl -m u:65534:rw f; setfacl -m m::r f", kNobody,
     "cat f", false, "allowed"},
    // No group bits: the kernel does not look at the ACL, other's read applies.
    {"chmod 604 empties the mask", "echo data > f; setfacl -m u:65534:rw f; chmod 604 f", kNobody, "cat f", false,
     "allowed"},
    {"chmod 640 limits the named user", "echo data > f; setfacl -m u:65534:rw f; chmod 640 f", kNobody,
     "echo x >> f", false, "denied"},
    {"chmod 604: getfacl", "echo data > f; setfacl -m u:65534:rw f; chmod 604 f", kRoot,
     "getfacl -cn f; stat -c %a f", true,
     "user::rw-\nuser:65534:rw-\t#effective:---\ngroup::r--\t#effective:---\nmask::---\nother::r--\n\n604"},
    {"chmod 660 restores the mask", "echo data > f; setfacl -m u:65534:rw f; chmod 600 f; chmod 660 f", kNobody,
     "echo x >> f", false, "allowed"},
    {"the owner is held to the owner entry", "echo data > f; chown 65534 f; chmod 0 f; setfacl -m u:65534:rwx f",
     kNobody, "cat f", false, "denied"},
    {"search through a directory ACL", "mkdir d; echo data > d/f; chmod 700 d; setfacl -m u:65534:x d", kNobody,
     "cat d/f", false, "allowed"},
    {"no listing without read", "mkdir d; echo data > d/f; chmod 700 d; setfacl -m u:65534:x d", kNobody, "ls d",
     false, "denied"},
    {"a new file inherits the default ACL", "mkdir d; setfacl -d -m u:65534:rw d; echo data > d/f", kNobody,
     "echo x >> d/f", false, "allowed"},
    {"inherited file: getfacl", "mkdir d; setfacl -d -m u:65534:rw d; echo data > d/f", kRoot,
     "getfacl -cn d/f; stat -c %a d/f", true,
     "user::rw-\nuser:65534:rw-\ngroup::r-x\t#effective:r--\nmask::rw-\nother::r--\n\n664"},
    {"a new directory inherits both ACLs", "mkdir d; setfacl -d -m u:65534:rwx,o::- d; mkdir d/sub", kRoot,
     "getfacl -cn d/sub; stat -c %a d/sub", true,
     "user::rwx\nuser:65534:rwx\ngroup::r-x\nmask::rwx\nother::---\ndefault:user::rwx\ndefault:user:65534:rwx\n"
     "default:group::r-x\ndefault:mask::rwx\ndefault:other::---\n\n770"},
    {"a named user creates in an inherited directory", "mkdir d; setfacl -d -m u:65534:rwx d; mkdir d/sub",
     kNobody, "touch d/sub/new", false, "allowed"},
    {"and nobody else does", "mkdir d; setfacl -d -m u:65534:rwx d; mkdir d/sub", kOther, "touch d/sub/new", false,
     "denied"},
    // mkfifo -m and mknod -m chmod after creating.
    {"inherited FIFO and device, then chmod", "mkdir d; setfacl -d -m u:65534:rw,g::-,o::- d", kRoot,
     "mkfifo -m 666 d/p; mknod -m 640 d/c c 1 3; getfacl -cn d/p; stat -c %a d/p d/c", true,
     "user::rw-\nuser:65534:rw-\ngroup::---\nmask::rw-\nother::rw-\n\n666\n640"},
    {"the umask does not apply under a default ACL", "mkdir d; setfacl -d -m u::rwx,g::rwx,o::rwx d", kRoot,
     "umask 077; touch d/f; mkdir d/g; stat -c %a d/f d/g", true, "666\n777"},
    {"the umask applies without one", "true", kRoot, "umask 027; touch f; mkdir g; mkfifo p; stat -c %a f g p",
     true, "640\n750\n640"},
    {"setfacl --set sets the mode", "echo data > f", kRoot,
     "setfacl --set u::rw,u:65534:r,g::r,g:65533:rw,m::rw,o::- f; getfacl -cn f; stat -c %a f", true,
     "user::rw-\nuser:65534:r--\ngroup::r--\ngroup:65533:rw-\nmask::rw-\nother::---\n\n660"},
    {"only the owner sets an ACL", "echo data > f; chmod 666 f", kNobody, "setfacl -m u:65534:rwx f", false,
     "denied"},
    {"the owner outside the group loses set-group-ID",
     "echo data > f; chown 65534:0 f; chmod 2770 f", kNobody, "setfacl -m u:65533:r f; stat -c %a f", true,
     "770"},
    {"setfacl -b gives the mode back", "echo data > f; chmod 644 f; setfacl -m u:65534:--- f; setfacl -b f",
     kNobody, "cat f", false, "allowed"},
    {"a default ACL on a file is refused", "echo data > f", kRoot, "setfacl -d -m u:65534:rwx f", false, "denied"},
};

// Runs `script` with sh in `dir` as `who`, with umask 022; the output (stdout
// and stderr) with `dir` replaced by ".".
std::string Probe(const std::string& dir, Who who, const std::string& script, bool text) {
  std::string cmd = text ? script : "if (" + script + ") >/dev/null 2>&1; then echo allowed; else echo denied; fi";
  if (who.uid != 0 || who.gid != 0) {
    cmd = "setpriv --reuid=" + std::to_string(who.uid) + " --regid=" + std::to_string(who.gid) +
          " --clear-groups -- sh -c '" + cmd + "'";
  }
  auto r = Shell("cd " + dir + " && umask 022 && " + cmd);
  std::string out = r.output;
  for (size_t at; (at = out.find(dir)) != std::string::npos;) out.replace(at, dir.size(), ".");
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string OneLine(std::string s) {
  for (char& c : s) {
    if (c == '\n') c = '|';
    if (c == '\t') c = ' ';
  }
  return s;
}

// The mount's arguments: the default (every user, the kernel checking
// permissions), and the same without the writeback cache.
class Acl : public ::testing::TestWithParam<const char*> {};

TEST_P(Acl, EnforcedInheritedAndMaskedAsOnExt4) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (switches users, loop-mounts ext4)";
  if (Shell("command -v setfacl getfacl setpriv").exit_code != 0) GTEST_SKIP() << "needs acl and setpriv";
  Ext4Reference ext4;
  if (ext4.path().empty()) GTEST_SKIP() << "no ext4 to compare with (cannot loop-mount, and TMPDIR is not ext4)";
  MountedVolume v(MountedVolume::Options{.mount_args = GetParam()});
  ::chmod(v.dir().path().c_str(), 0755);

  std::string table = "| case | as | ext4 | QCFS |\n|---|---|---|---|\n";
  int n = 0;
  for (const AclCase& c : kCases) {
    const std::string sub = "c" + std::to_string(++n);
    std::string results[2];
    const std::string roots[2] = {ext4.path() + "/" + sub, v.Path(sub)};
    for (int side = 0; side < 2; ++side) {
      ASSERT_EQ(::mkdir(roots[side].c_str(), 0755), 0) << roots[side];
      auto setup = Shell("cd " + roots[side] + " && umask 022 && " + c.setup);
      ASSERT_EQ(setup.exit_code, 0) << c.name << " (" << (side ? "QCFS" : "ext4") << "): " << setup.output;
      results[side] = Probe(roots[side], c.who, c.probe, c.text);
    }
    EXPECT_EQ(results[0], c.ext4) << c.name << ": ext4 does not do what the case says";
    EXPECT_EQ(results[1], results[0]) << c.name << ": QCFS differs from ext4";
    table += std::string("| ") + c.name + " | " + (c.who.uid == 0 ? "root" : std::to_string(c.who.uid) + ":" +
                                                                             std::to_string(c.who.gid)) +
             " | " + OneLine(results[0]) + " | " + OneLine(results[1]) + " |\n";
  }
  std::printf("%s", table.c_str());

  // After a remount the kernel has nothing cached: the ACLs come from the volume.
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  EXPECT_EQ(Probe(v.Path("c1"), kNobody, "cat f", false), "denied");
  EXPECT_EQ(Probe(v.Path("c15"), kNobody, "echo x >> d/f", false), "allowed");
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

INSTANTIATE_TEST_SUITE_P(Mounts, Acl, ::testing::Values("", "-o no_writeback_cache"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(*info.param == 0 ? "Default" : "NoWritebackCache");
                         });

}  // namespace
}  // namespace qcfs
