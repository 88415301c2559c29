#include "qcfs/fs/internal/posix_acl.h"

#include <sys/stat.h>

#include "qcfs/core/coding.h"

namespace qcfs::internal {

using Entry = PosixAcl::Entry;

Result<PosixAcl> PosixAcl::Parse(std::string_view value) {
  if (value.size() < 4 || (value.size() - 4) % 8 != 0 || LoadLE32(value.data()) != 2) {
    return Status::Error(EINVAL, "malformed POSIX ACL");
  }
  PosixAcl acl;
  for (size_t at = 4; at < value.size(); at += 8) {
    Entry e{LoadLE16(value.data() + at), LoadLE16(value.data() + at + 2), LoadLE32(value.data() + at + 4)};
    if (e.perm & ~7u) return Status::Error(EINVAL, "malformed POSIX ACL: bad permission bits");
    acl.entries.push_back(e);
  }
  if (acl.entries.empty()) return acl;
  // The kernel's posix_acl_valid: owner, named users, owning group, named
  // groups, mask (required after named entries), other, in that order.
  enum State { kWantUserObj, kInUsers, kInGroups, kWantOther, kDone } state = kWantUserObj;
  bool needs_mask = false;
  auto invalid = [] {
    return Status::Error(EINVAL, "invalid POSIX ACL: needs one owner, group and other entry in order, "
                                 "and a mask with named entries");
  };
  for (const Entry& e : acl.entries) {
    switch (e.tag) {
      case kUserObj:
        if (state != kWantUserObj) return invalid();
        state = kInUsers;
        break;
      case kUser:
        if (state != kInUsers) return invalid();
        needs_mask = true;
        break;
      case kGroupObj:
        if (state != kInUsers) return invalid();
        state = kInGroups;
        break;
      case kGroup:
        if (state != kInGroups) return invalid();
        needs_mask = true;
        break;
      case kMask:
        if (state != kInGroups) return invalid();
        state = kWantOther;
        break;
      case kOther:
        if (state != kWantOther && !(state == kInGroups && !needs_mask)) return invalid();
        state = kDone;
        break;
      default:
        return Status::Error(EINVAL, "malformed POSIX ACL: unknown entry tag");
    }
  }
  if (state != kDone) return invalid();
  return acl;
}

std::string PosixAcl::Encode() const {
  std::string out(4 + 8 * entries.size(), '\0');
  StoreLE32(out.data(), 2);
  size_t at = 4;
  for (const Entry& e : entries) {
    StoreLE16(out.data() + at, e.tag);
    StoreLE16(out.data() + at + 2, e.perm);
    StoreLE32(out.data() + at + 4, e.id);
    at += 8;
  }
  return out;
}

uint32_t PosixAcl::ModeBits() const {
  uint32_t owner = 0, group = 0, other = 0;
  bool masked = false;
  for (const Entry& e : entries) {
    switch (e.tag) {
      case kUserObj: owner = e.perm; break;
      case kGroupObj: if (!masked) group = e.perm; break;
      case kMask: group = e.perm; masked = true; break;
      case kOther: other = e.perm; break;
      default: break;
    }
  }
  return owner << 6 | group << 3 | other;
}

bool PosixAcl::EquivalentToMode() const {
  for (const Entry& e : entries) {
    if (e.tag == kUser || e.tag == kGroup || e.tag == kMask) return false;
  }
  return true;
}

bool InheritAccessAcl(PosixAcl* acl, uint32_t* mode_p) {
  uint32_t mode = *mode_p;
  bool not_equivalent = false;
  Entry* group_obj = nullptr;
  Entry* mask = nullptr;
  for (PosixAcl::Entry& e : acl->entries) {
    switch (e.tag) {
      case PosixAcl::kUserObj:
        e.perm &= (mode >> 6) & 7;
        mode &= (e.perm << 6) | ~static_cast<uint32_t>(S_IRWXU);
        break;
      case PosixAcl::kUser:
      case PosixAcl::kGroup:
        not_equivalent = true;
        break;
      case PosixAcl::kGroupObj:
        group_obj = &e;
        break;
      case PosixAcl::kOther:
        e.perm &= mode & 7;
        mode &= e.perm | ~static_cast<uint32_t>(S_IRWXO);
        break;
      case PosixAcl::kMask:
        mask = &e;
        not_equivalent = true;
        break;
      default:
        break;
    }
  }
  if (Entry* g = mask != nullptr ? mask : group_obj) {
    g->perm &= (mode >> 3) & 7;
    mode &= (g->perm << 3) | ~static_cast<uint32_t>(S_IRWXG);
  }
  *mode_p = mode;
  return not_equivalent;
}

void ChmodAcl(PosixAcl* acl, uint32_t mode) {
  Entry* group_obj = nullptr;
  Entry* mask = nullptr;
  for (PosixAcl::Entry& e : acl->entries) {
    switch (e.tag) {
      case PosixAcl::kUserObj: e.perm = (mode >> 6) & 7; break;
      case PosixAcl::kGroupObj: group_obj = &e; break;
      case PosixAcl::kMask: mask = &e; break;
      case PosixAcl::kOther: e.perm = mode & 7; break;
      default: break;
    }
  }
  if (Entry* g = mask != nullptr ? mask : group_obj) g->perm = (mode >> 3) & 7;
}

}  // namespace qcfs::internal
