// Mount options: what `qcfs mount -o ...`, mount(8) and fstab pass.
//
// QCFS's own options set VolumeOptions; the generic options of mount(8)
// (rw, ro, dev, nosuid, noatime...) go to the kernel through libfuse; those
// that only matter to mount(8) or fstab (auto, noauto, nofail, _netdev,
// user, defaults, x-*) are accepted and ignored. Anything else is an error
// that names the option.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "qcfs/core/status.h"
#include "qcfs/fs/volume.h"

namespace qcfs {

struct MountConfig {
  VolumeOptions volume;
  // Options handed to libfuse ("-o" list), e.g. "fsname=/dev/sdb1".
  std::vector<std::string> fuse_options;
  // Whether every user may use the mount (FUSE's allow_other), the kernel
  // checking permissions from the mode bits and POSIX ACLs. Unset (the
  // default): yes when root mounts, as for any system file system (mount(8),
  // fstab), no when another user does, since allow_other then needs
  // user_allow_other in /etc/fuse.conf. "-o allow_other" sets it;
  // "-o private" clears it: only processes of the mount's owner may enter.
  std::optional<bool> allow_other;
  // Permission checks by the kernel from the mode bits and POSIX ACLs
  // (FUSE's default_permissions). On a private mount only processes running
  // as the owner may enter at all, and for a mount owned by root those pass
  // every check but execute, which the kernel makes anyway: there the checks
  // are left out, and with them a GETATTR of the parent directory before
  // every create and unlink. They are on wherever others may enter, when
  // the owner is not root, and when this is set ("-o default_permissions").
  bool default_permissions = false;
  bool foreground = false;
  bool debug = false;  // log every FUSE request
  // Kernel cache lifetime of attributes and names (seconds). We are the
  // only writer, so long timeouts are safe; changes the kernel cannot see
  // are invalidated explicitly.
  double attr_timeout = 3600;
  double entry_timeout = 3600;
  // The kernel's page cache buffers writes (FUSE writeback cache): small
  // and random writes complete at memory speed and reach the volume as
  // large ones when the kernel writes back, at fsync at the latest. Used
  // only where the kernel lets the daemon clear set-user-ID and
  // set-group-ID bits itself (FUSE_HANDLE_KILLPRIV_V2, Linux 5.11 and
  // later); otherwise writes go through. Default on.
  bool writeback_cache = true;
  // Dirty page limit of the mount (changing it needs root; the daemon keeps
  // the kernel's where it cannot):
  //  - kAdaptive (default): a strict 10% of the system's limit while the
  //    kernel writes back in large pieces, so that a stream is compressed
  //    while it is written; the system's limits once it writes back small
  //    scattered pieces, so that random overwrites stay in the page cache
  //    (WritebackPolicy);
  //  - kSystem: the system's vm.dirty_ratio and vm.dirty_background_ratio,
  //    as for a kernel file system;
  //  - kFuse: the kernel's FUSE default, a strict 1% of them, which
  //    throttles writers long before the volume is busy.
  enum class DirtyLimit { kAdaptive, kSystem, kFuse };
  DirtyLimit dirty_limit = DirtyLimit::kAdaptive;
  // How far the kernel reads ahead of a sequential reader, in bytes (the
  // mount's read_ahead_kb; needs root). A FUSE mount otherwise keeps the
  // kernel's 128 KiB, and a cold sequential read then waits on the device
  // for each small piece. 0 keeps the kernel's. Default 1 MiB, the largest
  // read request the daemon takes.
  uint64_t readahead_bytes = 1 << 20;
};

// Whether others may use the mount (MountConfig::allow_other, resolved for
// the mounting user) and whether the kernel checks permissions.
bool AllowsOthers(const MountConfig& config);
bool KernelChecksPermissions(const MountConfig& config);

// Parses comma-separated option lists (each as given after one -o) into
// `config`. Later options override earlier ones.
Status ParseMountOptions(const std::vector<std::string>& lists, MountConfig* config);

// The text of every QCFS-specific option, for --help.
const char* MountOptionsHelp();

}  // namespace qcfs
