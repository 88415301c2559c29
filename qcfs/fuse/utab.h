// The mount's entry in libmount's utab (/run/mount/utab).
//
// umount(8) finds a file system's type with statfs(2), which says only
// "fuse" for every FUSE mount, unless utab holds an entry for the
// mountpoint; then it reads the full type (fuse.qcfs) and runs
// /sbin/umount.fuse.qcfs, which flushes and waits for the daemon. The
// daemon records its mount there (as root) and forgets it when it ends.
#pragma once

#include <string>

namespace qcfs {

// Both are best effort: a failure (not root, no /run/mount) is logged at
// debug level and changes nothing else.
void RecordInUtab(const std::string& device, const std::string& mountpoint);
void ForgetInUtab(const std::string& mountpoint);

}  // namespace qcfs
