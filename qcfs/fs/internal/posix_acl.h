// POSIX.1e access control lists as Linux stores them in the extended
// attributes system.posix_acl_access and system.posix_acl_default, and the
// rules that tie an ACL to the mode of its inode (the kernel's
// fs/posix_acl.c): what an ACL means for the mode, what a new inode
// inherits from its directory's default ACL, what chmod does to an ACL.
//
// The xattr form (linux/posix_acl_xattr.h) is a little-endian header
// {u32 version = 2} followed by entries {u16 tag, u16 perm, u32 id}, id
// meaningful for named users and groups only. Internal to the fs layer;
// pure functions, no state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "qcfs/core/status.h"

namespace qcfs::internal {

inline constexpr std::string_view kAccessAclName = "system.posix_acl_access";
inline constexpr std::string_view kDefaultAclName = "system.posix_acl_default";

struct PosixAcl {
  enum Tag : uint16_t { kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kGroup = 0x08, kMask = 0x10, kOther = 0x20 };
  struct Entry {
    uint16_t tag = 0;
    uint16_t perm = 0;  // rwx as 4|2|1
    uint32_t id = 0;    // uid or gid of kUser/kGroup; ~0 for the others
  };
  std::vector<Entry> entries;  // in the kernel's order (by tag, then id)

  // Parses and validates the xattr form: one owner, owning group and other
  // entry, named entries in their places, a mask exactly where named
  // entries need one (the kernel's posix_acl_valid). A bare header is an
  // empty ACL (entries empty). EINVAL otherwise.
  static Result<PosixAcl> Parse(std::string_view value);
  std::string Encode() const;

  // The permission bits (0777) the ACL gives the mode: owner, the mask (or
  // the owning group without one), other.
  uint32_t ModeBits() const;
  // Whether the mode says all the ACL says (no named entries and no mask):
  // such an access ACL is not stored (posix_acl_equiv_mode).
  bool EquivalentToMode() const;
};

// What a new inode gets from its directory's default ACL
// (posix_acl_create): the default ACL with the requested mode's bits
// masked in, and the mode masked by the ACL's owner, mask (or group) and
// other entries. *mode keeps its type and set-ID bits. Returns whether the
// result must be stored as the new inode's access ACL (it has named
// entries or a mask); otherwise the mode says it all.
bool InheritAccessAcl(PosixAcl* acl, uint32_t* mode);

// chmod of an inode with an access ACL (posix_acl_chmod): the owner,
// mask (or owning group without one) and other entries take the new
// mode's bits; named entries are kept, limited by the mask.
void ChmodAcl(PosixAcl* acl, uint32_t mode);

}  // namespace qcfs::internal
