// Mounting and unmounting: the life of a qcfs daemon.
//
// MountAndServe opens the volume, mounts it, registers the control channel
// and serves requests. In the background (the default) it forks first and
// returns in the parent once the mount is ready, or with the reason it could
// not be: nothing is left half-mounted. SIGTERM, SIGINT or an unmount end
// the daemon cleanly: the mount is detached, every buffer flushed, the
// volume closed.
#pragma once

#include <optional>
#include <string>

#include "qcfs/core/status.h"
#include "qcfs/fuse/mount_options.h"

namespace qcfs {

struct MountRequest {
  std::string device;
  std::string mountpoint;
  MountConfig config;
};

Status MountAndServe(const MountRequest& request);

// Flushes the daemon's buffers, unmounts and waits for the daemon to exit.
// `lazy` detaches a busy mount instead of failing.
Status UnmountVolume(const std::string& mountpoint, bool lazy);

// "/abs/parent/name" without touching `path` itself (a dead mountpoint
// cannot be stat'ed).
std::string AbsolutePath(const std::string& path);

// Whether `path` (absolute) is a mount point, from /proc/self/mountinfo.
bool IsMountPoint(const std::string& path);
// The "major:minor" of the newest mount on `path` (absolute), which also
// names its backing device info in /sys/class/bdi; nullopt if none.
std::optional<std::string> MountDevice(const std::string& path);

}  // namespace qcfs
