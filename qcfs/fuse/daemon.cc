#include "qcfs/fuse/daemon.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "qcfs/control/control.h"
#include "qcfs/control/volume_service.h"
#include "qcfs/core/log.h"
#include "qcfs/core/unique_fd.h"
#include "qcfs/fs/volume.h"
#include "qcfs/fuse/fuse_server.h"
#include "qcfs/fuse/utab.h"
#include "qcfs/fuse/writeback_policy.h"

namespace qcfs {
namespace {

std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      int v = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
      out.push_back(static_cast<char>(v));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Writes `value` to /sys/class/bdi/BDI/KNOB; false (and a note in the log)
// where it cannot (not root).
bool PutBdiKnob(const std::string& bdi, const char* knob, const std::string& value) {
  std::ofstream f("/sys/class/bdi/" + bdi + "/" + knob);
  f << value;
  f.flush();
  if (!f) Log(LogLevel::kInfo, "cannot set /sys/class/bdi/{}/{} to {} (not root?)", bdi, knob, value);
  return static_cast<bool>(f);
}

// Lets the mount's dirty pages follow the system's vm.dirty_* limits, like a
// kernel file system's, instead of FUSE's strict 1% of them.
bool SetSystemDirtyLimit(const std::string& bdi) {
  return PutBdiKnob(bdi, "max_ratio", "100") && PutBdiKnob(bdi, "strict_limit", "0");
}

// A strict share of the system's limits: the kernel writes back early.
bool SetStrictDirtyLimit(const std::string& bdi, uint32_t max_ratio) {
  return PutBdiKnob(bdi, "strict_limit", "1") && PutBdiKnob(bdi, "max_ratio", std::to_string(max_ratio));
}

// Applies a WritebackPolicy to the mount's bdi: the daemon's WRITE requests
// feed it, and a thread of its own reports the system's dirty page cache
// twice a second.
class DirtyLimitTuner {
 public:
  explicit DirtyLimitTuner(std::string bdi) : bdi_(std::move(bdi)) {
    Apply();
    thread_ = std::thread([this] { Loop(); });
  }
  ~DirtyLimitTuner() {
    {
      std::lock_guard lock(stop_mu_);
      stop_ = true;
    }
    stop_cv_.notify_all();
    thread_.join();
  }
  DirtyLimitTuner(const DirtyLimitTuner&) = delete;
  DirtyLimitTuner& operator=(const DirtyLimitTuner&) = delete;

  void OnWrite(size_t length) {
    if (policy_.OnWrite(length)) Apply();
  }

  // The share of the system's dirty threshold the current mode lets the
  // kernel hold, in percent.
  uint32_t share() const {
    return policy_.mode() == WritebackPolicy::Mode::kAbsorb ? 100 : policy_.options().stream_max_ratio;
  }

  // While held (a nearly full volume's cap is in force) the policy's modes
  // are not applied; releasing applies the current one.
  void Hold(bool held) {
    {
      std::lock_guard lock(apply_mu_);
      held_ = held;
    }
    if (!held) Apply();
  }

 private:
  // Writes the knobs of the current mode; the last caller writes the latest.
  void Apply() {
    std::lock_guard lock(apply_mu_);
    if (failed_ || held_) return;
    const bool absorb = policy_.mode() == WritebackPolicy::Mode::kAbsorb;
    const bool ok = absorb ? SetSystemDirtyLimit(bdi_) : SetStrictDirtyLimit(bdi_, policy_.options().stream_max_ratio);
    if (!ok) {
      failed_ = true;  // keep whatever the kernel has
      return;
    }
    Log(LogLevel::kInfo, "dirty page limit: {}", absorb ? "absorbing scattered writes (the system's limits)"
                                                       : "streaming (a strict share of the system's limits)");
  }

  void Loop() {
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    std::unique_lock lock(stop_mu_);
    while (!stop_cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return stop_; })) {
      if (policy_.mode() == WritebackPolicy::Mode::kStream) continue;  // only absorbing ends on a tick
      uint64_t dirty = 0, writeback = 0, background = 0;
      std::ifstream in("/proc/vmstat");
      std::string name;
      uint64_t value = 0;
      while (in >> name >> value) {
        if (name == "nr_dirty") dirty = value;
        else if (name == "nr_writeback") writeback = value;
        else if (name == "nr_dirty_background_threshold") background = value;
      }
      if (background == 0) continue;
      if (policy_.OnTick((dirty + writeback) * page, background * page)) Apply();
    }
  }

  const std::string bdi_;
  WritebackPolicy policy_;
  std::mutex apply_mu_;  // serializes Apply; guards failed_ and held_
  bool failed_ = false;
  bool held_ = false;    // Hold()
  std::mutex stop_mu_;   // guards stop_
  std::condition_variable stop_cv_;
  bool stop_ = false;
  std::thread thread_;
};

void SyslogSink(LogLevel level, std::string_view msg) {
  int prio = level == LogLevel::kError ? LOG_ERR : level == LogLevel::kWarning ? LOG_WARNING : LOG_INFO;
  syslog(prio, "%.*s", static_cast<int>(msg.size()), msg.data());
}

// Writes the startup outcome to the parent: "OK\n" or "ERR errno message\n".
void Report(int fd, const Status& s) {
  if (fd < 0) return;
  std::string line = s.ok() ? "OK\n" : fmt::format("ERR {} {}\n", s.code(), s.ToString());
  ssize_t n = ::write(fd, line.data(), line.size());
  (void)n;
}

// Runs in the daemon: open, mount, serve, and clean up.
Status Serve(const MountRequest& req, int ready_fd) {
  // Chunk buffers are allocated by FUSE threads and freed by the flusher;
  // with one malloc arena per thread the freed memory stays scattered and
  // the resident size drifts above the cache budget. Two arenas keep it near.
  ::mallopt(M_ARENA_MAX, 2);
  MountConfig config = req.config;
  std::atomic<FuseServer*> server_ptr{nullptr};
  config.volume.on_attr_changed = [&server_ptr](uint64_t ino) {
    if (FuseServer* s = server_ptr.load()) s->InvalidateAttr(ino);
  };
  config.volume.on_data_lost = [&server_ptr](uint64_t ino) {
    if (FuseServer* s = server_ptr.load()) s->InvalidateInode(ino);  // its cached pages go too
  };
  config.volume.on_inode_replaced = [&server_ptr](uint64_t ino) {
    FuseServer* s = server_ptr.load();
    if (s == nullptr) return;
    // A regular file gets a new generation: with the writeback cache the
    // kernel would keep the old size of an inode it still holds.
    auto a = s->volume()->GetAttr(ino);
    if (a.ok() && S_ISREG(a->mode)) s->ReplaceInode(ino);
    s->InvalidateInode(ino);
  };
  config.volume.on_entry_changed = [&server_ptr](uint64_t parent, const std::string& name) {
    if (FuseServer* s = server_ptr.load()) s->InvalidateEntry(parent, name);
  };
  auto volume_or = Volume::Open(req.device, config.volume);
  if (!volume_or.ok()) return volume_or.status();
  std::unique_ptr<Volume> volume = std::move(volume_or).value();
  auto server_or = FuseServer::Mount(volume.get(), req.device, req.mountpoint, config);
  if (!server_or.ok()) return server_or.status();
  std::unique_ptr<FuseServer> server = std::move(server_or).value();
  server_ptr = server.get();
  std::shared_ptr<DirtyLimitTuner> tuner;  // shared with the server's thread (OnDirtyCap)
  std::optional<std::string> bdi = MountDevice(req.mountpoint);
  if (!bdi) {
    Log(LogLevel::kInfo, "{} not found in /proc/self/mountinfo; keeping the kernel's read-ahead and dirty limit",
        req.mountpoint);
  }
  if (bdi && config.readahead_bytes > 0) {
    (void)PutBdiKnob(*bdi, "read_ahead_kb", std::to_string(config.readahead_bytes >> 10));  // logged where it cannot
  }
  if (bdi && config.dirty_limit != MountConfig::DirtyLimit::kFuse) {
    if (config.dirty_limit == MountConfig::DirtyLimit::kSystem) {
      (void)SetSystemDirtyLimit(*bdi);  // where it cannot, the kernel's limit stays (logged)
    } else {
      tuner = std::make_shared<DirtyLimitTuner>(*bdi);
      server->ObserveWrites([t = tuner.get()](size_t length) { t->OnWrite(length); });
    }
  }
  if (bdi) {
    const auto limit = config.dirty_limit;
    server->DirtyShare([t = tuner, limit]() -> uint32_t {
      if (t != nullptr) return t->share();
      return limit == MountConfig::DirtyLimit::kFuse ? 1 : 100;
    });
    // A nearly full volume caps what the kernel may cache for it (SpaceGuard).
    server->OnDirtyCap([bdi = *bdi, t = tuner, limit = config.dirty_limit](uint64_t cap) {
      if (cap > 0) {
        if (t != nullptr) t->Hold(true);
        (void)(PutBdiKnob(bdi, "strict_limit", "1") && PutBdiKnob(bdi, "max_bytes", std::to_string(cap)));
      } else if (t != nullptr) {
        t->Hold(false);
      } else if (limit == MountConfig::DirtyLimit::kSystem) {
        (void)SetSystemDirtyLimit(bdi);
      } else {
        (void)SetStrictDirtyLimit(bdi, 1);  // FUSE's own
      }
    });
  }

  MountRecord record;
  record.pid = ::getpid();
  record.device = req.device;
  record.mountpoint = req.mountpoint;
  record.socket = SocketPathFor(req.mountpoint);
  record.uuid = volume->superblock().UuidString();
  record.owner = ::getuid();
  Volume* v = volume.get();
  FuseServer* s = server.get();
  auto control_or = ControlServer::Start(record.socket, ::getuid(), [v, s](const nlohmann::json& r) {
    nlohmann::json reply = ServeVolumeRequest(v, r);
    // What the request changed (a restore replaces files) leaves the
    // kernel's caches before the caller hears back.
    s->WaitForInvalidations();
    return reply;
  });
  if (!control_or.ok()) return control_or.status();
  std::unique_ptr<ControlServer> control = std::move(control_or).value();
  QCFS_RETURN_IF_ERROR(RegisterMount(record));

  Report(ready_fd, Status::Ok());
  if (ready_fd >= 0) {
    ::close(ready_fd);
    int devnull = ::open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      ::dup2(devnull, 0);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      if (devnull > 2) ::close(devnull);
    }
  }
  RecordInUtab(req.device, req.mountpoint);
  Log(LogLevel::kInfo, "mounted {} on {}", req.device, req.mountpoint);
  Status run = server->Run();
  tuner.reset();  // Run's threads are gone: nothing calls it any more
  // Detach first, so that nobody waits on a mount that no longer serves,
  // then flush and close.
  server_ptr = nullptr;
  server->Unmount();
  ForgetInUtab(req.mountpoint);
  control.reset();
  MarkClosing(record);  // a new mount of the device waits for the close
  Status closed = volume->Close();
  server.reset();
  UnregisterClosing(record);
  if (!closed.ok()) Log(LogLevel::kError, "closing {}: {}", req.device, closed.ToString());
  else Log(LogLevel::kInfo, "unmounted {} cleanly", req.device);
  return run.ok() ? closed : run;
}

}  // namespace

std::string AbsolutePath(const std::string& path) {
  std::filesystem::path p(path);
  if (!p.is_absolute()) p = std::filesystem::current_path() / p;
  p = p.lexically_normal();
  std::string name = p.filename().string();
  if (name.empty()) {  // trailing slash
    p = p.parent_path();
    name = p.filename().string();
  }
  std::error_code ec;
  auto parent = std::filesystem::canonical(p.parent_path(), ec);
  if (ec) return p.string();
  if (name.empty()) return parent.string();
  return (parent / name).string();
}

std::optional<std::string> MountDevice(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::optional<std::string> device;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint ...
    size_t pos = 0;
    size_t dev = 0, dev_end = 0;
    for (int field = 0; field < 4; ++field) {
      if (field == 2) dev = pos;
      pos = line.find(' ', pos);
      if (pos == std::string::npos) break;
      if (field == 2) dev_end = pos;
      ++pos;
    }
    if (pos == std::string::npos) continue;
    size_t end = line.find(' ', pos);
    if (Unescape(line.substr(pos, end - pos)) == path) device = line.substr(dev, dev_end - dev);  // the newest wins
  }
  return device;
}

bool IsMountPoint(const std::string& path) { return MountDevice(path).has_value(); }

Status MountAndServe(const MountRequest& request) {
  MountRequest req = request;
  req.mountpoint = AbsolutePath(request.mountpoint);
  struct stat st {};
  if (::stat(req.device.c_str(), &st) != 0) return ErrnoStatus(errno, req.device);
  char real[PATH_MAX];
  if (::realpath(req.device.c_str(), real) == nullptr) return ErrnoStatus(errno, req.device);
  req.device = real;
  if (::stat(req.mountpoint.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Errorf(ENOENT, "mountpoint {} does not exist", req.mountpoint);
    if (errno == ENOTCONN) {
      return Status::Errorf(ENOTCONN, "{} is a dead mount (its daemon was killed); run 'qcfs umount {}' first",
                            req.mountpoint, req.mountpoint);
    }
    return ErrnoStatus(errno, req.mountpoint);
  }
  if (!S_ISDIR(st.st_mode)) return Status::Errorf(ENOTDIR, "mountpoint {} is not a directory", req.mountpoint);
  if (IsMountPoint(req.mountpoint)) {
    return Status::Errorf(EBUSY, "{} is already a mount point; unmount it first", req.mountpoint);
  }
  if (auto existing = FindMount(req.device)) {
    return Status::Errorf(EBUSY, "{} is already mounted at {}", req.device, existing->mountpoint);
  }
  // Unmounted a moment ago (fusermount3 -u returns before the daemon has
  // written everything): wait for that daemon to close the volume.
  if (auto closing = FindClosing(req.device)) {
    Log(LogLevel::kInfo, "waiting for the previous mount's daemon (pid {}) to finish writing {}", closing->pid,
        req.device);
    for (int i = 0; ProcessRunning(closing->pid); ++i) {
      if (i == 6000) {
        return Status::Errorf(EBUSY, "{}: the previous mount's daemon (pid {}) is still closing it after 10 minutes",
                              req.device, closing->pid);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  if (req.config.foreground) {
    if (::chdir("/") != 0) return ErrnoStatus(errno, "chdir /");
    return Serve(req, -1);
  }

  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus(errno, "fork");
  if (pid == 0) {
    ::close(pipefd[0]);
    ::setsid();
    if (::chdir("/") != 0) _exit(1);
    ::signal(SIGPIPE, SIG_IGN);
    openlog("qcfs", LOG_PID, LOG_DAEMON);
    SetLogSink(SyslogSink);
    Status s = Serve(req, pipefd[1]);
    if (!s.ok()) {
      Report(pipefd[1], s);
      Log(LogLevel::kError, "{}", s.ToString());
    }
    _exit(s.ok() ? 0 : 1);
  }
  ::close(pipefd[1]);
  UniqueFd ready(pipefd[0]);
  std::string answer;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(ready.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buf, static_cast<size_t>(n));
    if (answer.find('\n') != std::string::npos) break;
  }
  if (answer.starts_with("OK")) return Status::Ok();
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (answer.starts_with("ERR ")) {
    int err = std::atoi(answer.c_str() + 4);
    auto sp = answer.find(' ', 4);
    std::string msg = sp == std::string::npos ? answer : answer.substr(sp + 1);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return Status::Error(err == 0 ? EIO : err, msg);
  }
  return Status::Error(EIO, "the qcfs daemon exited during startup (see the system log)");
}

Status UnmountVolume(const std::string& mountpoint, bool lazy) {
  std::string path = AbsolutePath(mountpoint);
  std::optional<MountRecord> rec = FindMount(path);
  if (rec) {
    // Flush while the mount still serves, so that errors can be reported.
    auto r = ControlCall(rec->socket, {{"op", "sync"}});
    if (!r.ok() && !lazy) return r.status().WithContext("flushing before unmount");
  } else if (!IsMountPoint(path)) {
    return Status::Errorf(EINVAL, "{} is not mounted", path);
  }
  if (::geteuid() == 0) {
    if (::umount2(path.c_str(), lazy ? MNT_DETACH : 0) != 0) {
      if (errno == EBUSY) {
        return Status::Errorf(EBUSY, "{} is busy: files are open there (close them, or use --lazy to detach)", path);
      }
      if (errno != EINVAL || IsMountPoint(path)) return ErrnoStatus(errno, "umount " + path);
    }
  } else {
    std::string cmd = fmt::format("fusermount3 -u {} '{}'", lazy ? "-z" : "", path);
    if (std::system(cmd.c_str()) != 0) return Status::Errorf(EIO, "fusermount3 -u {} failed", path);
  }
  ForgetInUtab(path);
  if (rec && !lazy) {
    // The daemon flushes and closes the volume; wait for it. (A lazy
    // detach returns at once: the daemon ends when the last file closes.)
    for (int i = 0; ProcessRunning(rec->pid); ++i) {
      if (i == 6000) return Status::Errorf(ETIMEDOUT, "the daemon (pid {}) has not exited after 10 minutes", rec->pid);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  return Status::Ok();
}

}  // namespace qcfs
