// Namespace semantics of the Volume, without FUSE.
#include "qcfs/fs/volume.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/xattr.h>

#include <condition_variable>
#include <initializer_list>
#include <mutex>
#include <span>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>

#include "qcfs/io/device.h"
#include "qcfs/meta/schema.h"
#include "qcfs/store/superblock.h"
#include "tests/testutil/volume_fixture.h"

namespace qcfs {
namespace {

using testing::Names;
using testing::TestVolume;

const Caller kRoot{0, 0};

TEST(Volume, FreshVolumeHasAnEmptyRoot) {
  TestVolume v;
  auto root = v->GetAttr(kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_TRUE(S_ISDIR(root->mode));
  EXPECT_EQ(root->nlink, 2u);
  EXPECT_TRUE(Names(v.get(), kRootIno).empty());
}

TEST(Volume, CreateLookupAndListSurviveReopen) {
  TestVolume v;
  auto dir = v->Mkdir(kRootIno, "docs", 0755, kRoot);
  ASSERT_TRUE(dir.ok());
  uint64_t f = v.CreateFile(dir->ino, "a.txt", "hello");
  ASSERT_TRUE(v->Symlink(kRootIno, "link", "docs/a.txt", kRoot).ok());
  ASSERT_TRUE(v->Mknod(kRootIno, "fifo", S_IFIFO | 0600, 0, kRoot).ok());
  v.Reopen();
  auto a = v->Lookup(dir->ino, "a.txt");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->ino, f);
  EXPECT_EQ(v.ReadAll(f), "hello");
  EXPECT_EQ(*v->Readlink(v->Lookup(kRootIno, "link")->ino), "docs/a.txt");
  EXPECT_TRUE(S_ISFIFO(v->Lookup(kRootIno, "fifo")->mode));
  EXPECT_EQ(Names(v.get(), kRootIno), (std::vector<std::string>{"docs", "fifo", "link"}));
  EXPECT_EQ(v->GetAttr(kRootIno)->nlink, 3u);
}

TEST(Volume, ErrorsCarryTheRightErrno) {
  TestVolume v;
  v.CreateFile(kRootIno, "f");
  ASSERT_TRUE(v->Mkdir(kRootIno, "d", 0755, kRoot).ok());
  EXPECT_EQ(v->Lookup(kRootIno, "missing").status().code(), ENOENT);
  EXPECT_EQ(v->Mkdir(kRootIno, "f", 0755, kRoot).status().code(), EEXIST);
  EXPECT_EQ(v->Unlink(kRootIno, "d").code(), EISDIR);
  EXPECT_EQ(v->Rmdir(kRootIno, "f").code(), ENOTDIR);
  EXPECT_EQ(v->Mkdir(v->Lookup(kRootIno, "f")->ino, "x", 0755, kRoot).status().code(), ENOTDIR);
  EXPECT_EQ(v->Mkdir(kRootIno, std::string(256, 'n'), 0755, kRoot).status().code(), ENAMETOOLONG);
  EXPECT_EQ(v->Link(v->Lookup(kRootIno, "d")->ino, kRootIno, "d2").status().code(), EPERM);
  ASSERT_TRUE(v->Mkdir(v->Lookup(kRootIno, "d")->ino, "sub", 0755, kRoot).ok());
  EXPECT_EQ(v->Rmdir(kRootIno, "d").code(), ENOTEMPTY);
}

TEST(Volume, HardLinksShareDataAndCountLinks) {
  TestVolume v;
  uint64_t f = v.CreateFile(kRootIno, "a", "shared");
  ASSERT_TRUE(v->Link(f, kRootIno, "b").ok());
  EXPECT_EQ(v->GetAttr(f)->nlink, 2u);
  ASSERT_TRUE(v->Unlink(kRootIno, "a").ok());
  EXPECT_EQ(v->GetAttr(f)->nlink, 1u);
  EXPECT_EQ(v.ReadAll(v->Lookup(kRootIno, "b")->ino), "shared");
  ASSERT_TRUE(v->Unlink(kRootIno, "b").ok());
  EXPECT_EQ(v->GetAttr(f).status().code(), ENOENT);
}

TEST(Volume, RenameReplacesAndMovesDirectories) {
  TestVolume v;
  auto d1 = *v->Mkdir(kRootIno, "d1", 0755, kRoot);
  auto d2 = *v->Mkdir(kRootIno, "d2", 0755, kRoot);
  uint64_t a = v.CreateFile(d1.ino, "a", "A");
  uint64_t b = v.CreateFile(d2.ino, "b", "B");
  ASSERT_TRUE(v->Rename(d1.ino, "a", d2.ino, "b", 0).ok());
  EXPECT_EQ(v->Lookup(d2.ino, "b")->ino, a);
  EXPECT_EQ(v->GetAttr(b).status().code(), ENOENT) << "the replaced file is gone";
  EXPECT_EQ(v->Lookup(d1.ino, "a").status().code(), ENOENT);
  auto sub = *v->Mkdir(d1.ino, "sub", 0755, kRoot);
  ASSERT_TRUE(v->Rename(d1.ino, "sub", d2.ino, "sub", 0).ok());
  EXPECT_EQ(v->GetAttr(d1.ino)->nlink, 2u);
  EXPECT_EQ(v->GetAttr(d2.ino)->nlink, 3u);
  EXPECT_EQ(v->Lookup(sub.ino, "..")->ino, d2.ino);
  EXPECT_EQ(v->Rename(kRootIno, "d2", sub.ino, "loop", 0).code(), EINVAL) << "a directory cannot move into itself";
}

TEST(Volume, RenameNoreplaceAndExchange) {
  TestVolume v;
  uint64_t a = v.CreateFile(kRootIno, "a", "A");
  uint64_t b = v.CreateFile(kRootIno, "b", "B");
  EXPECT_EQ(v->Rename(kRootIno, "a", kRootIno, "b", RENAME_NOREPLACE).code(), EEXIST);
  ASSERT_TRUE(v->Rename(kRootIno, "a", kRootIno, "b", RENAME_EXCHANGE).ok());
  EXPECT_EQ(v->Lookup(kRootIno, "a")->ino, b);
  EXPECT_EQ(v->Lookup(kRootIno, "b")->ino, a);
  EXPECT_EQ(v->Rename(kRootIno, "a", kRootIno, "zz", RENAME_EXCHANGE).code(), ENOENT);
  auto d = *v->Mkdir(kRootIno, "dir", 0755, kRoot);
  EXPECT_EQ(v->Rename(kRootIno, "dir", kRootIno, "a", 0).code(), ENOTDIR);
  EXPECT_EQ(v->Rename(kRootIno, "a", kRootIno, "dir", 0).code(), EISDIR);
  (void)d;
}

TEST(Volume, UnlinkedOpenFileLivesUntilLastClose) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "tmp", 0600, O_RDWR, kRoot);
  v.WriteAt(f.ino, 0, "still here");
  ASSERT_TRUE(v->Unlink(kRootIno, "tmp").ok());
  EXPECT_EQ(v->Lookup(kRootIno, "tmp").status().code(), ENOENT);
  EXPECT_EQ(v.ReadAll(f.ino), "still here");
  ASSERT_TRUE(v->Release(f.ino).ok());
  EXPECT_EQ(v->GetAttr(f.ino).status().code(), ENOENT);
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_EQ(v->store()->Usage().stats.chunks, 0u);
}

TEST(Volume, OrphansOfACrashAreReleasedAtTheNextOpen) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "tmp", 0600, O_RDWR, kRoot);
  v.WriteAt(f.ino, 0, std::string(100000, 'x'));
  ASSERT_TRUE(v->Fsync(f.ino, false).ok());
  ASSERT_TRUE(v->Unlink(kRootIno, "tmp").ok());
  EXPECT_GT(v->store()->Usage().stats.chunks, 0u);
  v.Reopen();  // the handle was never released
  EXPECT_EQ(v->GetAttr(f.ino).status().code(), ENOENT);
  EXPECT_EQ(v->store()->Usage().stats.chunks, 0u);
}

TEST(Volume, AttributesAndSetgidInheritance) {
  TestVolume v;
  auto d = *v->Mkdir(kRootIno, "shared", 02775, Caller{1000, 1000});
  EXPECT_EQ(d.uid, 1000u);
  auto f = *v->Mknod(d.ino, "f", S_IFREG | 0644, 0, Caller{2000, 2000});
  EXPECT_EQ(f.gid, 1000u) << "a setgid directory hands down its group";
  auto sub = *v->Mkdir(d.ino, "sub", 0755, Caller{2000, 2000});
  EXPECT_TRUE(sub.mode & S_ISGID);
  SetAttrRequest req;
  req.mode = 0600;
  req.uid = 7;
  req.mtime_ns = 1'000'000'000;
  auto a = v->SetAttr(f.ino, req);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->mode & 07777, 0600u);
  EXPECT_EQ(a->uid, 7u);
  v.Reopen();
  auto b = *v->GetAttr(f.ino);
  EXPECT_EQ(b.mtime_ns, 1'000'000'000);
  EXPECT_EQ(b.uid, 7u);
  EXPECT_TRUE(S_ISREG(b.mode));
}

// The kernel's xattr form of a POSIX ACL: version 2, then {tag, perm, id}.
std::string AclValue(std::initializer_list<std::tuple<uint16_t, uint16_t, uint32_t>> entries) {
  std::string v("\x02\x00\x00\x00", 4);
  for (auto [tag, perm, id] : entries) {
    for (uint32_t x : {uint32_t{tag} | uint32_t{perm} << 16, id}) {
      for (int i = 0; i < 4; ++i) v.push_back(static_cast<char>(x >> (8 * i)));
    }
  }
  return v;
}

TEST(Volume, AccessAclSetsTheModeAndIsKeptOnlyWhenTheModeCannotSayIt) {
  TestVolume v;
  uint64_t f = v.CreateFile(kRootIno, "f");  // 0644, owned by root
  // What `cp -a` sends for a 0755 source: the mode's own ACL.
  ASSERT_TRUE(v->SetXattr(f, "system.posix_acl_access", AclValue({{0x01, 7, ~0u}, {0x04, 5, ~0u}, {0x20, 5, ~0u}}), 0).ok());
  EXPECT_EQ(v->GetAttr(f)->mode & 07777, 0755u);
  EXPECT_EQ(v->GetXattr(f, "system.posix_acl_access").status().code(), ENODATA);
  EXPECT_TRUE(v->ListXattr(f)->empty());
  // A named user needs the ACL kept; the group bits show its mask.
  std::string extended = AclValue({{0x01, 6, ~0u}, {0x02, 7, 1000}, {0x04, 4, ~0u}, {0x10, 6, ~0u}, {0x20, 0, ~0u}});
  ASSERT_TRUE(v->SetXattr(f, "system.posix_acl_access", extended, 0).ok());
  EXPECT_EQ(v->GetAttr(f)->mode & 07777, 0660u);
  EXPECT_EQ(*v->GetXattr(f, "system.posix_acl_access"), extended);
  // Back to a plain mode: the stored ACL goes.
  ASSERT_TRUE(v->SetXattr(f, "system.posix_acl_access", AclValue({{0x01, 6, ~0u}, {0x04, 0, ~0u}, {0x20, 0, ~0u}}), 0).ok());
  EXPECT_EQ(v->GetAttr(f)->mode & 07777, 0600u);
  EXPECT_EQ(v->GetXattr(f, "system.posix_acl_access").status().code(), ENODATA);
  v.Reopen();
  EXPECT_EQ(v->GetAttr(f)->mode & 07777, 0600u);
}

TEST(Volume, AccessAclIsTheOwnersAndMustBeWellFormed) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "f", 02775, 0, Caller{1000, 100});
  ASSERT_TRUE(v->Release(f.ino).ok());
  std::string acl = AclValue({{0x01, 7, ~0u}, {0x04, 7, ~0u}, {0x20, 0, ~0u}});
  EXPECT_EQ(v->SetXattr(f.ino, "system.posix_acl_access", acl, 0, Caller{1001, 100}).code(), EPERM);
  EXPECT_EQ(v->SetXattr(f.ino, "system.posix_acl_access", "junk", 0, Caller{1000, 100}).code(), EINVAL);
  // A named group without a mask is not a valid ACL.
  EXPECT_EQ(v->SetXattr(f.ino, "system.posix_acl_access",
                        AclValue({{0x01, 7, ~0u}, {0x04, 7, ~0u}, {0x08, 7, 5}, {0x20, 0, ~0u}}), 0, Caller{1000, 100})
                .code(),
            EINVAL);
  EXPECT_EQ(v->GetAttr(f.ino)->mode & 07777, 02775u);
  // The owner keeps set-group-ID only as a member of the file's group, as with chmod.
  ASSERT_TRUE(v->SetXattr(f.ino, "system.posix_acl_access", acl, 0, Caller{1000, 200, {100}}).ok());
  EXPECT_EQ(v->GetAttr(f.ino)->mode & 07777, 02770u);
  ASSERT_TRUE(v->SetXattr(f.ino, "system.posix_acl_access", acl, 0, Caller{1000, 200}).ok());
  EXPECT_EQ(v->GetAttr(f.ino)->mode & 07777, 0770u);
}

// Tags of ACL entries (linux/posix_acl_xattr.h).
constexpr uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kGroup = 0x08, kMask = 0x10, kOther = 0x20;
constexpr uint32_t kNoId = ~0u;

TEST(Volume, AnAclWithAMaskIsKeptEvenWithoutNamedEntries) {
  TestVolume v;
  uint64_t f = v.CreateFile(kRootIno, "f");
  // setfacl -m m::r: the mask hides the owning group's write.
  std::string masked = AclValue({{kUserObj, 6, kNoId}, {kGroupObj, 6, kNoId}, {kMask, 4, kNoId}, {kOther, 4, kNoId}});
  ASSERT_TRUE(v->SetXattr(f, "system.posix_acl_access", masked, 0).ok());
  EXPECT_EQ(v->GetAttr(f)->mode & 07777, 0644u);
  EXPECT_EQ(*v->GetXattr(f, "system.posix_acl_access"), masked);
}

TEST(Volume, TheUmaskAppliesWhereTheDirectoryHasNoDefaultAcl) {
  TestVolume v;
  Caller masked{0, 0, {}, 022};
  EXPECT_EQ(v->Create(kRootIno, "f", 0666, 0, masked)->mode & 07777, 0644u);
  EXPECT_EQ(v->Mkdir(kRootIno, "d", 0777, masked)->mode & 07777, 0755u);
  EXPECT_EQ(v->Mknod(kRootIno, "p", S_IFIFO | 0666, 0, masked)->mode & 07777, 0644u);
  EXPECT_EQ(v->Symlink(kRootIno, "l", "f", masked)->mode & 07777, 0777u);
}

TEST(Volume, NewInodesInheritTheDirectorysDefaultAclInsteadOfTheUmask) {
  TestVolume v;
  auto d = *v->Mkdir(kRootIno, "d", 0755, kRoot);
  // setfacl -d -m u:1000:rwx,g::r-x,o::--- d
  std::string def = AclValue({{kUserObj, 7, kNoId}, {kUser, 7, 1000}, {kGroupObj, 5, kNoId}, {kMask, 7, kNoId},
                              {kOther, 0, kNoId}});
  ASSERT_TRUE(v->SetXattr(d.ino, "system.posix_acl_default", def, 0).ok());
  EXPECT_EQ(v->GetAttr(d.ino)->mode & 07777, 0755u);  // a default ACL leaves the mode alone
  Caller masked{0, 0, {}, 077};                        // ignored under a default ACL

  // A file asked for as 0666: the mask takes the group bits (rw-), the owner
  // and other entries are limited by the mode.
  auto f = *v->Create(d.ino, "f", 0666, 0, masked);
  EXPECT_EQ(f.mode & 07777, 0660u);
  EXPECT_EQ(*v->GetXattr(f.ino, "system.posix_acl_access"),
            AclValue({{kUserObj, 6, kNoId}, {kUser, 7, 1000}, {kGroupObj, 5, kNoId}, {kMask, 6, kNoId},
                      {kOther, 0, kNoId}}));
  EXPECT_EQ(v->GetXattr(f.ino, "system.posix_acl_default").status().code(), ENODATA);
  ASSERT_TRUE(v->Release(f.ino).ok());

  // A directory gets both: the access ACL and the default ACL itself.
  auto sub = *v->Mkdir(d.ino, "sub", 0777, masked);
  EXPECT_EQ(sub.mode & 07777, 0770u);
  EXPECT_EQ(*v->GetXattr(sub.ino, "system.posix_acl_access"),
            AclValue({{kUserObj, 7, kNoId}, {kUser, 7, 1000}, {kGroupObj, 5, kNoId}, {kMask, 7, kNoId},
                      {kOther, 0, kNoId}}));
  EXPECT_EQ(*v->GetXattr(sub.ino, "system.posix_acl_default"), def);
  // ... and passes it on.
  auto deep = *v->Mknod(sub.ino, "fifo", S_IFIFO | 0640, 0, masked);
  EXPECT_EQ(deep.mode & 07777, 0640u);
  EXPECT_EQ(*v->GetXattr(deep.ino, "system.posix_acl_access"),
            AclValue({{kUserObj, 6, kNoId}, {kUser, 7, 1000}, {kGroupObj, 5, kNoId}, {kMask, 4, kNoId},
                      {kOther, 0, kNoId}}));
  // A symlink gets neither ACL nor umask.
  auto l = *v->Symlink(d.ino, "l", "f", masked);
  EXPECT_EQ(l.mode & 07777, 0777u);
  EXPECT_EQ(v->GetXattr(l.ino, "system.posix_acl_access").status().code(), ENODATA);

  // A default ACL without named entries or mask gives only a mode.
  auto plain = *v->Mkdir(kRootIno, "plain", 0755, kRoot);
  ASSERT_TRUE(v->SetXattr(plain.ino, "system.posix_acl_default",
                          AclValue({{kUserObj, 7, kNoId}, {kGroupObj, 0, kNoId}, {kOther, 0, kNoId}}), 0)
                  .ok());
  auto p = *v->Create(plain.ino, "p", 0666, 0, Caller{0, 0, {}, 0});
  EXPECT_EQ(p.mode & 07777, 0600u);
  EXPECT_EQ(v->GetXattr(p.ino, "system.posix_acl_access").status().code(), ENODATA);
  ASSERT_TRUE(v->Release(p.ino).ok());

  v.Reopen();
  EXPECT_EQ(v->GetAttr(deep.ino)->mode & 07777, 0640u);
  EXPECT_EQ(*v->GetXattr(sub.ino, "system.posix_acl_default"), def);
}

TEST(Volume, ChmodRewritesTheMaskOfAStoredAcl) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "f", 0644, 0, kRoot);
  ASSERT_TRUE(v->Release(f.ino).ok());
  ASSERT_TRUE(v->SetXattr(f.ino, "system.posix_acl_access",
                          AclValue({{kUserObj, 6, kNoId}, {kUser, 6, 1000}, {kGroupObj, 4, kNoId}, {kMask, 6, kNoId},
                                    {kOther, 4, kNoId}}),
                          0)
                  .ok());
  SetAttrRequest r;
  r.mode = 0704;  // chmod g-rw: the named user loses write through the mask
  ASSERT_TRUE(v->SetAttr(f.ino, r).ok());
  EXPECT_EQ(*v->GetXattr(f.ino, "system.posix_acl_access"),
            AclValue({{kUserObj, 7, kNoId}, {kUser, 6, 1000}, {kGroupObj, 4, kNoId}, {kMask, 0, kNoId},
                      {kOther, 4, kNoId}}));
  // Without a mask chmod's group bits go to the owning group's entry (a
  // stored ACL without a mask only comes from an older volume, or a default).
  auto d = *v->Mkdir(kRootIno, "d", 0755, kRoot);
  std::string def = AclValue({{kUserObj, 7, kNoId}, {kGroupObj, 5, kNoId}, {kOther, 5, kNoId}});
  ASSERT_TRUE(v->SetXattr(d.ino, "system.posix_acl_default", def, 0).ok());
  r.mode = 0700;
  ASSERT_TRUE(v->SetAttr(d.ino, r).ok());
  EXPECT_EQ(*v->GetXattr(d.ino, "system.posix_acl_default"), def);  // chmod leaves the default ACL
  // Also on a file being written, whose attributes otherwise ride with its flush.
  auto g = *v->Create(kRootIno, "g", 0644, 0, kRoot);
  ASSERT_TRUE(v->SetXattr(g.ino, "system.posix_acl_access",
                          AclValue({{kUserObj, 6, kNoId}, {kGroupObj, 4, kNoId}, {kGroup, 6, 50}, {kMask, 6, kNoId},
                                    {kOther, 4, kNoId}}),
                          0)
                  .ok());
  v.WriteAt(g.ino, 0, "data");
  r.mode = 0640;
  ASSERT_TRUE(v->SetAttr(g.ino, r).ok());
  ASSERT_TRUE(v->Release(g.ino).ok());
  v.Reopen();
  EXPECT_EQ(v->GetAttr(g.ino)->mode & 07777, 0640u);
  EXPECT_EQ(*v->GetXattr(g.ino, "system.posix_acl_access"),
            AclValue({{kUserObj, 6, kNoId}, {kGroupObj, 4, kNoId}, {kGroup, 6, 50}, {kMask, 4, kNoId},
                      {kOther, 0, kNoId}}));
}

TEST(Volume, ADefaultAclIsForDirectoriesAndTheirOwners) {
  TestVolume v;
  uint64_t f = v.CreateFile(kRootIno, "f");
  std::string def = AclValue({{kUserObj, 7, kNoId}, {kGroupObj, 5, kNoId}, {kOther, 5, kNoId}});
  EXPECT_EQ(v->SetXattr(f, "system.posix_acl_default", def, 0).code(), EACCES);
  auto d = *v->Mkdir(kRootIno, "d", 0755, Caller{1000, 100});
  EXPECT_EQ(v->SetXattr(d.ino, "system.posix_acl_default", def, 0, Caller{1001, 100}).code(), EPERM);
  EXPECT_EQ(v->SetXattr(d.ino, "system.posix_acl_default", "junk", 0, Caller{1000, 100}).code(), EINVAL);
  // Entries out of order are not a valid ACL.
  EXPECT_EQ(v->SetXattr(d.ino, "system.posix_acl_default",
                        AclValue({{kGroupObj, 5, kNoId}, {kUserObj, 7, kNoId}, {kOther, 5, kNoId}}), 0,
                        Caller{1000, 100})
                .code(),
            EINVAL);
  ASSERT_TRUE(v->SetXattr(d.ino, "system.posix_acl_default", def, 0, Caller{1000, 100}).ok());
  EXPECT_EQ(*v->GetXattr(d.ino, "system.posix_acl_default"), def);
}

TEST(Volume, AttributesSetOnAnOpenFileRideWithItsFlush) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "f", 0600, 0, kRoot);
  v.WriteAt(f.ino, 0, "data");
  SetAttrRequest r;
  r.mode = 0640;
  r.uid = 7;
  r.mtime_ns = 1'000'000'000;
  ASSERT_TRUE(v->SetAttr(f.ino, r).ok());
  // Set up for the flush, and seen at once.
  auto a = *v->GetAttr(f.ino);
  EXPECT_EQ(a.mode & 07777, 0640u);
  EXPECT_EQ(a.uid, 7u);
  EXPECT_EQ(a.mtime_ns, 1'000'000'000);
  // The same through an access ACL (what cp -a sends instead of chmod).
  std::string acl("\x02\x00\x00\x00\x01\x00\x06\x00\xff\xff\xff\xff\x04\x00\x04\x00\xff\xff\xff\xff"
                  "\x20\x00\x04\x00\xff\xff\xff\xff", 28);
  ASSERT_TRUE(v->SetXattr(f.ino, "system.posix_acl_access", acl, 0).ok());
  EXPECT_EQ(v->GetAttr(f.ino)->mode & 07777, 0644u);
  ASSERT_TRUE(v->Fsync(f.ino, false).ok());
  ASSERT_TRUE(v->Release(f.ino).ok());
  v.Reopen();
  a = *v->GetAttr(f.ino);
  EXPECT_EQ(a.mode & 07777, 0644u);
  EXPECT_EQ(a.uid, 7u);
  EXPECT_EQ(a.mtime_ns, 1'000'000'000);
  EXPECT_EQ(a.size, 4u);
  // A file nobody has open is written at once.
  r = SetAttrRequest{};
  r.mode = 0600;
  ASSERT_TRUE(v->SetAttr(f.ino, r).ok());
  v.Reopen();
  EXPECT_EQ(v->GetAttr(f.ino)->mode & 07777, 0600u);
}

// A flush round that carries only a file's deferred attributes must not,
// when it commits late, write its record over a newer one.
TEST(Volume, LateAttributeFlushDoesNotOverwriteANewerRecord) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "f", 0644, 0, kRoot);
  SetAttrRequest chmod;
  chmod.mode = 0600;
  ASSERT_TRUE(v->SetAttr(f.ino, chmod).ok());  // deferred: the file is open
  std::mutex mu;
  std::condition_variable cv;
  bool held = false, go = false;
  v->SetCommitHookForTesting([&] {
    std::unique_lock lock(mu);
    if (held) return;
    held = true;
    cv.notify_all();
    cv.wait(lock, [&] { return go; });
  });
  std::thread flush([&] { EXPECT_TRUE(v->Sync().ok()); });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return held; });
  }
  // While that round waits to commit: close, change the mode directly,
  // let the state go, and link the file under a second name.
  ASSERT_TRUE(v->Release(f.ino).ok());
  chmod.mode = 0640;
  ASSERT_TRUE(v->SetAttr(f.ino, chmod).ok());
  char byte;
  ASSERT_TRUE(v->Read(f.ino, 0, std::as_writable_bytes(std::span(&byte, 1))).ok());  // drops the clean state
  ASSERT_TRUE(v->Link(f.ino, kRootIno, "g").ok());
  {
    std::lock_guard lock(mu);
    go = true;
  }
  cv.notify_all();
  flush.join();
  v->SetCommitHookForTesting(nullptr);
  v.Reopen();
  auto a = *v->GetAttr(f.ino);
  EXPECT_EQ(a.nlink, 2u);
  EXPECT_EQ(a.mode & 07777, 0640u);
}

TEST(Volume, ExtendedAttributes) {
  TestVolume v;
  uint64_t f = v.CreateFile(kRootIno, "f");
  ASSERT_TRUE(v->SetXattr(f, "user.color", "blue", 0).ok());
  ASSERT_TRUE(v->SetXattr(f, "system.posix_acl_access", AclValue({{0x01, 6, ~0u}, {0x02, 4, 1000}, {0x04, 4, ~0u},
                                                                   {0x10, 4, ~0u}, {0x20, 4, ~0u}}), 0).ok());
  EXPECT_EQ(v->SetXattr(f, "user.color", "red", XATTR_CREATE).code(), EEXIST);
  EXPECT_EQ(v->SetXattr(f, "user.size", "1", XATTR_REPLACE).code(), ENODATA);
  EXPECT_EQ(*v->GetXattr(f, "user.color"), "blue");
  EXPECT_EQ(v->GetXattr(f, "user.none").status().code(), ENODATA);
  v.Reopen();
  EXPECT_EQ(*v->ListXattr(f), (std::vector<std::string>{"system.posix_acl_access", "user.color"}));
  ASSERT_TRUE(v->RemoveXattr(f, "user.color").ok());
  EXPECT_EQ(v->RemoveXattr(f, "user.color").code(), ENODATA);
}

// Unlink reads a dense file's few extents by key and skips the attribute
// walk for an inode that never had one; every other shape walks. Whatever
// the shape, nothing of a removed inode stays behind.
TEST(Volume, RemovingAnInodeLeavesNoExtentsOrAttributes) {
  TestVolume v;
  const std::string small(1000, 's');
  uint64_t plain = v.CreateFile(kRootIno, "plain", small);
  uint64_t dense = v.CreateFile(kRootIno, "dense", testing::RandomBytes(200000, 3));  // 4 chunks, all stored
  uint64_t tagged = v.CreateFile(kRootIno, "tagged", small);
  ASSERT_TRUE(v->SetXattr(tagged, "user.a", "1", 0).ok());
  ASSERT_TRUE(v->SetXattr(tagged, "user.b", "2", 0).ok());
  ASSERT_TRUE(v->RemoveXattr(tagged, "user.b").ok());  // one left
  uint64_t sparse = v.CreateFile(kRootIno, "sparse");
  v.WriteAt(sparse, 10ull << 20, "far out");  // one stored chunk of many slots
  uint64_t big = v.CreateFile(kRootIno, "big", testing::RandomBytes(1 << 20, 4));  // more slots than are read by key
  auto dir = *v->Mkdir(kRootIno, "dir", 0755, kRoot);
  ASSERT_TRUE(v->SetXattr(dir.ino, "user.dir", "x", 0).ok());
  v.Reopen();
  for (const char* name : {"plain", "dense", "tagged", "sparse", "big"}) {
    ASSERT_TRUE(v->Unlink(kRootIno, name).ok()) << name;
  }
  ASSERT_TRUE(v->Rmdir(kRootIno, "dir").ok());
  for (uint64_t ino : {plain, dense, tagged, sparse, big, dir.ino}) {
    for (const std::string& prefix : {schema::ExtentPrefix(ino), schema::XattrPrefix(ino)}) {
      auto it = v->db()->Iterate(prefix);
      it->Seek();
      EXPECT_FALSE(it->Valid()) << "inode " << ino << " left key type " << prefix[0];
    }
  }
  ASSERT_TRUE(v->Sync().ok());
  EXPECT_EQ(v->store()->Usage().stats.chunks, 0u);
}

// Lookups of attributes answer from the inode's record when it says there
// are none, whether the inode is open (in memory) or not.
// A volume made before block checksums is marked as using them by its
// first read-write open, before anything is written in those formats, so
// that an older qcfs refuses it instead of failing its reads. A read-only
// open leaves it as it is.
TEST(Volume, OlderVolumeIsMarkedForTheNewFormatsOnItsFirstWritableOpen) {
  TestVolume v;
  const uint64_t f = v.CreateFile(kRootIno, "f", "data");
  v.Close();
  auto features = [&] {
    auto device = OpenDevice(v.image(), DeviceOptions{});
    EXPECT_TRUE(device.ok());
    auto sb = ReadSuperblock(device->get());
    EXPECT_TRUE(sb.ok()) << sb.status().ToString();
    return sb.ok() ? sb->incompat_features : ~uint64_t{0};
  };
  const uint64_t all = Superblock::kIncompatBlockSums | Superblock::kIncompatMetaFileCopies;
  EXPECT_EQ(features(), all) << "mkfs marks a new volume";
  {
    auto device = std::move(OpenDevice(v.image(), DeviceOptions{})).value();
    Superblock sb = *ReadSuperblock(device.get());
    sb.incompat_features = 0;  // as an older mkfs wrote it
    ASSERT_TRUE(WriteSuperblock(device.get(), sb).ok());
  }
  v.options().read_only = true;
  v.Open();
  EXPECT_EQ(v.ReadAll(f), "data");
  v.Close();
  EXPECT_EQ(features(), 0u);
  v.options().read_only = false;
  v.Open();
  v.Close();
  EXPECT_EQ(features(), all);
  // A feature this build does not know is refused, naming it.
  {
    auto device = std::move(OpenDevice(v.image(), DeviceOptions{})).value();
    Superblock sb = *ReadSuperblock(device.get());
    sb.incompat_features |= uint64_t{1} << 40;
    ASSERT_TRUE(WriteSuperblock(device.get(), sb).ok());
  }
  auto refused = Volume::Open(v.image(), v.options());
  EXPECT_EQ(refused.status().code(), EPROTONOSUPPORT);
  EXPECT_NE(refused.status().message().find("10000000000"), std::string::npos) << refused.status().ToString();
}

TEST(Volume, AttributeLookupsFollowTheInodeRecord) {
  TestVolume v;
  auto f = *v->Create(kRootIno, "open", 0644, O_RDWR, kRoot);
  EXPECT_EQ(v->GetXattr(f.ino, "security.capability").status().code(), ENODATA);
  EXPECT_TRUE(v->ListXattr(f.ino)->empty());
  // Setting answers from the record too: nothing to replace yet, then something to collide with.
  EXPECT_EQ(v->SetXattr(f.ino, "user.k", "v", XATTR_REPLACE).code(), ENODATA);
  ASSERT_TRUE(v->SetXattr(f.ino, "user.k", "v", XATTR_CREATE).ok());
  EXPECT_EQ(v->SetXattr(f.ino, "user.k", "w", XATTR_CREATE).code(), EEXIST);
  EXPECT_EQ(*v->GetXattr(f.ino, "user.k"), "v");
  EXPECT_EQ(v->GetXattr(f.ino, "user.other").status().code(), ENODATA);
  ASSERT_TRUE(v->Release(f.ino).ok());
  uint64_t closed = v.CreateFile(kRootIno, "closed", "x");
  v.Reopen();
  EXPECT_EQ(v->GetXattr(closed, "security.capability").status().code(), ENODATA);
  EXPECT_TRUE(v->ListXattr(closed)->empty());
  EXPECT_EQ(*v->GetXattr(f.ino, "user.k"), "v");
  EXPECT_EQ(*v->ListXattr(f.ino), std::vector<std::string>{"user.k"});
  EXPECT_EQ(v->GetXattr(999999, "user.k").status().code(), ENOENT);
  EXPECT_EQ(v->ListXattr(999999).status().code(), ENOENT);
}

TEST(Volume, LargeDirectoriesListCompletelyInOrder) {
  TestVolume v;
  auto d = *v->Mkdir(kRootIno, "big", 0755, kRoot);
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE(v->Mknod(d.ino, fmt::format("f{:05}", i), S_IFREG | 0644, 0, kRoot).ok());
  }
  std::vector<std::string> names;
  std::string after;
  // Resume after the last name, a page at a time, like readdir does.
  for (;;) {
    size_t before = names.size();
    ASSERT_TRUE(v->ReadDir(d.ino, after, [&](const DirEntry& e) {
                   names.push_back(e.name);
                   return names.size() - before < 100;
                 }).ok());
    if (names.size() == before) break;
    after = names.back();
  }
  ASSERT_EQ(names.size(), 3000u);
  EXPECT_EQ(names.front(), "f00000");
  EXPECT_EQ(names.back(), "f02999");
  EXPECT_EQ(v->GetAttr(d.ino)->size, 3000u);
}

TEST(Volume, StatfsReportsRealFigures) {
  TestVolume v(128ull << 20);
  auto st = *v->StatFs();
  EXPECT_EQ(st.f_bsize, 4096u);
  EXPECT_GT(st.f_blocks, 25000u);
  EXPECT_LE(st.f_bavail, st.f_bfree);
  v.CreateFile(kRootIno, "big", testing::RandomBytes(8 << 20, 5));
  ASSERT_TRUE(v->Sync().ok());
  auto after = *v->StatFs();
  EXPECT_LT(after.f_bfree + (7 << 20) / 4096, st.f_bfree);
}

TEST(Volume, ReadOnlyVolumeRefusesChanges) {
  TestVolume v;
  v.CreateFile(kRootIno, "f", "data");
  v.Close();
  v.options().read_only = true;
  v.Open();
  EXPECT_EQ(v.ReadAll(v->Lookup(kRootIno, "f")->ino), "data");
  EXPECT_EQ(v->Mkdir(kRootIno, "d", 0755, kRoot).status().code(), EROFS);
  EXPECT_EQ(v->Open(v->Lookup(kRootIno, "f")->ino, O_WRONLY).status().code(), EROFS);
}

}  // namespace
}  // namespace qcfs
