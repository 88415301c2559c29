#include "qcfs/control/control.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xxhash.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include "qcfs/core/log.h"

namespace qcfs {
namespace {

std::string RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) != nullptr) return buf;
  return path;
}


Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "control channel write");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// Reads up to a newline; fails after timeout_ms without progress.
Result<std::string> ReadLine(int fd, int timeout_ms) {
  std::string line;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "control channel poll");
    }
    if (r == 0) return Status::Error(ETIMEDOUT, "the daemon did not answer in time");
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "control channel read");
    }
    if (n == 0) return Status::Error(ECONNRESET, "the daemon closed the control channel");
    line.append(buf, static_cast<size_t>(n));
    auto nl = line.find('\n');
    if (nl != std::string::npos) {
      line.resize(nl);
      return line;
    }
    if (line.size() > (64u << 20)) return Status::Error(EPROTO, "control message too large");
  }
}

}  // namespace

bool ProcessRunning(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  char state = stat[close + 2];
  if (state == 'X') return false;
  if (state != 'Z') return true;
  // A thread group's leader is a zombie as soon as it has exited, while its
  // other threads may still be exiting, holding the process's files (the
  // volume's lock among them): the process has ended once it is the last.
  std::error_code ec;
  std::filesystem::directory_iterator tasks("/proc/" + std::to_string(pid) + "/task", ec), end;
  int threads = 0;
  for (; !ec && tasks != end && threads < 2; tasks.increment(ec)) ++threads;
  return threads > 1;
}

std::string RuntimeDir() {
  if (const char* dir = std::getenv("QCFS_RUNTIME_DIR"); dir != nullptr && *dir) return dir;
  if (::geteuid() == 0) return "/run/qcfs";
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg) return std::string(xdg) + "/qcfs";
  return "/tmp/qcfs-" + std::to_string(::geteuid());
}

std::string SocketPathFor(const std::string& mountpoint) {
  std::string real = RealPath(mountpoint);
  return fmt::format("{}/{:016x}.sock", RuntimeDir(), XXH64(real.data(), real.size(), 0));
}

nlohmann::json MountRecord::ToJson() const {
  return {{"pid", pid},   {"device", device}, {"mountpoint", mountpoint}, {"socket", socket},
          {"uuid", uuid}, {"owner", owner},   {"closing", closing}};
}

std::optional<int64_t> JsonInt(const nlohmann::json& j, const char* key, int64_t fallback, int64_t min,
                               int64_t max) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (it->is_number_unsigned()) {
    uint64_t v = it->get<uint64_t>();
    if (v > static_cast<uint64_t>(max)) return std::nullopt;
    return static_cast<int64_t>(v);
  }
  if (!it->is_number_integer()) return std::nullopt;
  int64_t v = it->get<int64_t>();
  if (v < min || v > max) return std::nullopt;
  return v;
}

std::optional<MountRecord> MountRecord::FromJson(const nlohmann::json& j) {
  try {
    MountRecord r;
    // pid is required (the fallback 0 is refused); owner defaults to root.
    const int64_t pid = JsonInt(j, "pid", 0, 1, std::numeric_limits<pid_t>::max()).value_or(0);
    const int64_t owner = JsonInt(j, "owner", 0, 0, std::numeric_limits<uid_t>::max()).value_or(-1);
    if (pid == 0 || owner < 0) return std::nullopt;
    r.pid = static_cast<pid_t>(pid);
    r.device = j.at("device").get<std::string>();
    r.mountpoint = j.at("mountpoint").get<std::string>();
    r.socket = j.at("socket").get<std::string>();
    r.uuid = j.value("uuid", "");
    r.owner = static_cast<uid_t>(owner);
    r.closing = j.value("closing", false);
    return r;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

Status RegisterMount(const MountRecord& record) {
  std::error_code ec;
  std::filesystem::create_directories(RuntimeDir(), ec);
  if (ec) return Status::Errorf(EIO, "cannot create {}: {}", RuntimeDir(), ec.message());
  ::chmod(RuntimeDir().c_str(), 0755);
  std::string path = record.socket.substr(0, record.socket.size() - 5) + ".json";
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << record.ToJson().dump() << "\n";
    if (!out) return Status::Errorf(EIO, "cannot write {}", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, "rename " + tmp);
  return Status::Ok();
}

namespace {

std::optional<MountRecord> ReadRecord(const std::filesystem::path& path) {
  std::ifstream in(path);
  auto j = nlohmann::json::parse(in, nullptr, false);
  return j.is_discarded() ? std::nullopt : MountRecord::FromJson(j);
}

std::string ClosingPathFor(pid_t pid) { return RuntimeDir() + "/closing-" + std::to_string(pid) + ".json"; }

}  // namespace

void UnregisterMount(const MountRecord& record) {
  std::string path = record.socket.substr(0, record.socket.size() - 5) + ".json";
  auto current = ReadRecord(path);
  if (current && current->pid != record.pid) return;  // a newer mount's
  ::unlink(path.c_str());
}

void MarkClosing(MountRecord record) {
  record.closing = true;
  std::string path = ClosingPathFor(record.pid);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << record.ToJson().dump() << "\n";
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) ::unlink(tmp.c_str());
  UnregisterMount(record);
}

void UnregisterClosing(const MountRecord& record) { ::unlink(ClosingPathFor(record.pid).c_str()); }

std::optional<MountRecord> FindClosing(const std::string& device) {
  for (const MountRecord& r : ListMounts(true)) {
    if (r.closing && r.device == device) return r;
  }
  return std::nullopt;
}

std::vector<MountRecord> ListMounts(bool include_closing) {
  std::vector<MountRecord> out;
  std::error_code ec;
  for (auto& entry : std::filesystem::directory_iterator(RuntimeDir(), ec)) {
    if (entry.path().extension() != ".json") continue;
    auto rec = ReadRecord(entry.path());
    if (!rec || !ProcessRunning(rec->pid)) {
      std::filesystem::remove(entry.path(), ec);
      continue;
    }
    if (rec->closing && !include_closing) continue;
    out.push_back(*rec);
  }
  return out;
}

std::optional<MountRecord> FindMount(const std::string& path) {
  // The mountpoint itself is never touched (its daemon may be stuck or gone).
  std::filesystem::path p(path);
  if (!p.is_absolute()) p = std::filesystem::current_path() / p;
  p = p.lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  std::error_code ec;
  auto parent = std::filesystem::canonical(p.parent_path(), ec);
  std::string abs = ec ? p.string() : (parent / p.filename()).string();
  std::string real = RealPath(abs);
  for (const MountRecord& r : ListMounts()) {
    if (r.mountpoint == abs || r.device == abs || r.device == real) return r;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- server

ControlServer::ControlServer(std::string path, UniqueFd listener, uid_t owner, Handler handler)
    : path_(std::move(path)), listener_(std::move(listener)), owner_(owner), handler_(std::move(handler)) {}

Result<std::unique_ptr<ControlServer>> ControlServer::Start(const std::string& path, uid_t owner, Handler handler) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Status::Errorf(ENAMETOOLONG, "socket path {} is too long", path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus(errno, "socket");
  ::unlink(path.c_str());
  mode_t old = ::umask(0177);
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) return ErrnoStatus(errno, "bind " + path);
  ::chmod(path.c_str(), 0600);
  if (::listen(fd.get(), 16) != 0) return ErrnoStatus(errno, "listen " + path);
  std::unique_ptr<ControlServer> server(new ControlServer(path, std::move(fd), owner, std::move(handler)));
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
  server->wake_read_.reset(pipefd[0]);
  server->wake_write_.reset(pipefd[1]);
  server->thread_ = std::thread([s = server.get()] { s->Loop(); });
  return server;
}

ControlServer::~ControlServer() {
  if (wake_write_.valid()) {
    char c = 'x';
    ssize_t n = ::write(wake_write_.get(), &c, 1);
    (void)n;
  }
  if (thread_.joinable()) thread_.join();
  std::unique_lock lock(active_mu_);
  active_cv_.wait(lock, [&] { return active_ == 0; });
  ::unlink(path_.c_str());
}

void ControlServer::Loop() {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {wake_read_.get(), POLLIN, 0}};
    int r = ::poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client.valid()) continue;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(client.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != 0 && cred.uid != owner_)) {
      nlohmann::json refusal = {{"error", "permission denied: only root and the owner of the mount may control it"},
                                {"errno", EACCES}};
      ReadLine(client.get(), 1000).IgnoreError();  // the request, so that the peer can read the answer
      WriteAll(client.get(), refusal.dump() + "\n").IgnoreError();
      continue;
    }
    // Requests can take long (sync); serve each on its own thread.
    {
      std::lock_guard lock(active_mu_);
      ++active_;
    }
    std::thread([this, fd = client.release()] {
      Serve(fd);
      std::lock_guard lock(active_mu_);
      --active_;
      active_cv_.notify_all();
    }).detach();
  }
}

void ControlServer::Serve(int raw_fd) {
  UniqueFd fd(raw_fd);
  auto line = ReadLine(fd.get(), 10000);
  if (!line.ok()) return;
  nlohmann::json response;
  auto request = nlohmann::json::parse(*line, nullptr, false);
  if (request.is_discarded() || !request.is_object()) {
    response = {{"error", "malformed request"}, {"errno", EINVAL}};
  } else {
    try {
      response = handler_(request);
    } catch (const std::exception& e) {
      response = {{"error", std::string("internal error: ") + e.what()}, {"errno", EIO}};
    }
  }
  WriteAll(fd.get(), response.dump() + "\n").IgnoreError();
}

namespace {

// Waits until the kernel has handed every cached write of the files open on
// device `dev` (through a descriptor or a mapping, in any process) to the
// daemon. syncfs alone starts that writeback but, for FUSE, does not wait
// for it (Linux 6.16 and later skip FUSE mappings when syncfs waits);
// sync_file_range on each such file does. Files nobody holds open have no
// cached writes left: the kernel writes them back at close.
void WaitForOpenFiles(dev_t dev) {
  std::set<ino_t> done;
  std::error_code ec;
  for (const auto& proc : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = proc.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    for (const char* dir : {"fd", "map_files"}) {
      std::error_code ec2;
      for (const auto& entry : std::filesystem::directory_iterator(proc.path() / dir, ec2)) {
        struct stat st {};
        const std::string path = entry.path();
        if (::stat(path.c_str(), &st) != 0 || st.st_dev != dev || !S_ISREG(st.st_mode)) continue;
        if (!done.insert(st.st_ino).second) continue;
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOATIME));
        if (!fd.valid()) fd.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd.valid()) continue;  // not ours to open: best effort
        ::sync_file_range(fd.get(), 0, 0,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      }
    }
  }
}

}  // namespace

Status SyncMount(const std::string& mountpoint) {
  UniqueFd fd(::open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Status::Errorf(errno, "cannot open {}: {}", mountpoint, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::Errorf(errno, "cannot stat {}: {}", mountpoint, std::strerror(errno));
  if (::syncfs(fd.get()) != 0) {
    return Status::Errorf(errno, "writing back {}'s cached writes: {}", mountpoint, std::strerror(errno));
  }
  WaitForOpenFiles(st.st_dev);
  return Status::Ok();
}

Result<nlohmann::json> ControlCall(const std::string& socket_path, const nlohmann::json& request, int timeout_ms) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) return Status::Error(ENAMETOOLONG, "socket path too long");
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus(errno, "socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return Status::Errorf(errno, "cannot reach the qcfs daemon at {}: {}", socket_path, std::strerror(errno));
  }
  Status sent = WriteAll(fd.get(), request.dump() + "\n");
  // Even when sending failed the daemon may have answered (a refusal).
  auto line_or = ReadLine(fd.get(), timeout_ms);
  if (!line_or.ok()) return sent.ok() ? line_or.status() : sent;
  std::string line = std::move(line_or).value();
  auto response = nlohmann::json::parse(line, nullptr, false);
  if (response.is_discarded()) return Status::Error(EPROTO, "malformed answer from the daemon");
  if (response.is_object() && response.contains("error")) {
    const auto code = JsonInt(response, "errno", EIO, 1, 4095);
    const auto& error = response["error"];
    if (!code || !error.is_string()) return Status::Error(EPROTO, "malformed error answer from the daemon");
    return Status::Error(static_cast<int>(*code), error.get<std::string>());
  }
  return response;
}

}  // namespace qcfs
