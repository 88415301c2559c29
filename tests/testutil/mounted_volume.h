// A QCFS volume mounted through the real qcfs binary and FUSE, in a temp
// dir. The destructor always unmounts, even when the test failed or the
// daemon was killed (a dead mount is detached with fusermount3 -u -z).
#pragma once

#include <sys/types.h>

#include <functional>
#include <set>
#include <string>

#include "tests/testutil/temp_dir.h"

namespace qcfs::testing {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// The names in a directory, "." and ".." included (empty if it cannot be read).
std::set<std::string> ListDir(const std::string& path);

// Runs a shell command and captures its output.
CommandResult Shell(const std::string& command);
// The qcfs binary under test ($QCFS_BIN, or beside the test binary).
std::string QcfsBin();

class MountedVolume {
 public:
  struct Options {
    uint64_t size = 1ull << 30;
    std::string mkfs_args;   // extra `qcfs mkfs` arguments
    std::string mount_args;  // extra `qcfs mount` arguments, e.g. "-o noatime"
  };
  MountedVolume();
  explicit MountedVolume(Options options);
  MountedVolume(const MountedVolume&) = delete;
  MountedVolume& operator=(const MountedVolume&) = delete;
  ~MountedVolume();

  const std::string& mnt() const { return mnt_; }
  const std::string& image() const { return image_; }
  std::string Path(const std::string& rel) const { return mnt_ + "/" + rel; }
  TempDir& dir() { return dir_; }

  // `qcfs ARGS`, output captured.
  CommandResult Qcfs(const std::string& args) const;
  // Mount / unmount with the qcfs CLI; assert-free, return the result.
  CommandResult Mount();
  CommandResult Unmount();
  bool mounted() const { return mounted_; }
  // The daemon serving the mount, from its mount record.
  pid_t DaemonPid() const;
  // SIGKILL the daemon and detach the dead mount. `workload`, if given, is
  // a child process using the mount: it is reaped after the kill and before
  // the detach (`after_kill` runs between kill and reaping). Its calls on
  // the dead mount fail (ENOTCONN), so it ends; once the mount is detached
  // its paths would resolve to the directory underneath, and whatever it
  // wrote there, successfully and fsync'd, would be hidden by the next
  // mount and look like data the volume lost.
  void KillDaemon(pid_t workload = 0, const std::function<void()>& after_kill = {});

 private:
  Options options_;
  TempDir dir_;
  std::string image_;
  std::string mnt_;
  std::string runtime_;
  bool mounted_ = false;
};

}  // namespace qcfs::testing
