#include "tests/testutil/mounted_volume.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "qcfs/control/control.h"

namespace qcfs::testing {

std::set<std::string> ListDir(const std::string& path) {
  std::set<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) names.insert(e->d_name);
  ::closedir(d);
  return names;
}

CommandResult Shell(const std::string& command) {
  CommandResult r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = ::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string QcfsBin() {
  if (const char* bin = std::getenv("QCFS_BIN"); bin != nullptr && *bin) return bin;
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / "qcfs").string();
}

MountedVolume::MountedVolume() : MountedVolume(Options{}) {}

MountedVolume::MountedVolume(Options options) : options_(std::move(options)) {
  image_ = dir_.Join("vol.img");
  mnt_ = dir_.Join("mnt");
  runtime_ = dir_.Join("run");
  std::filesystem::create_directories(mnt_);
  // Mount records and control sockets of this test stay in its temp dir.
  ::setenv("QCFS_RUNTIME_DIR", runtime_.c_str(), 1);
  CommandResult mk = Qcfs("mkfs " + image_ + " --size " + std::to_string(options_.size) + " " + options_.mkfs_args);
  if (mk.exit_code != 0) throw std::runtime_error("qcfs mkfs failed: " + mk.output);
  CommandResult m = Mount();
  if (m.exit_code != 0) throw std::runtime_error("qcfs mount failed: " + m.output);
}

MountedVolume::~MountedVolume() {
  if (mounted_) {
    CommandResult r = Unmount();
    if (r.exit_code != 0) {
      Shell("fusermount3 -u -z " + mnt_);
      pid_t pid = DaemonPid();
      if (pid > 0) ::kill(pid, SIGKILL);
    }
  }
  // Never leave a dead mount behind, whatever happened.
  Shell("fusermount3 -u -z " + mnt_ + " 2>/dev/null");
}

CommandResult MountedVolume::Qcfs(const std::string& args) const {
  return Shell("QCFS_RUNTIME_DIR=" + runtime_ + " " + QcfsBin() + " " + args);
}

CommandResult MountedVolume::Mount() {
  CommandResult r = Qcfs("mount " + image_ + " " + mnt_ + " " + options_.mount_args);
  mounted_ = r.exit_code == 0;
  return r;
}

CommandResult MountedVolume::Unmount() {
  CommandResult r = Qcfs("umount " + mnt_);
  if (r.exit_code == 0) mounted_ = false;
  return r;
}

pid_t MountedVolume::DaemonPid() const {
  auto rec = FindMount(mnt_);
  return rec ? rec->pid : -1;
}

void MountedVolume::KillDaemon(pid_t workload, const std::function<void()>& after_kill) {
  pid_t pid = DaemonPid();
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    for (int i = 0; i < 6000 && ProcessRunning(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (after_kill) after_kill();
  if (workload > 0) {
    int status;
    ::waitpid(workload, &status, 0);
  }
  Shell("fusermount3 -u -z " + mnt_);
  mounted_ = false;
}

}  // namespace qcfs::testing
