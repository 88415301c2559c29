// The control channel on any bytes, both ways, and the mount records.
//
// Input: u8 mode, then the bytes.
//   mode 0: the bytes are a request line sent to a ControlServer whose
//           handler is ServeVolumeRequest on a small in-memory volume (with
//           files and a snapshot "base"); the answer must be a JSON object.
//   mode 1: the bytes are the daemon's answer to ControlCall, which must
//           turn anything into a Result, never throw.
//   mode 2: the bytes are a mount record file (MountRecord::FromJson).
// Snapshots a request made are deleted again after it, so that the volume
// stays small; "base" stays.
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "qcfs/control/control.h"
#include "qcfs/control/volume_service.h"
#include "qcfs/core/unique_fd.h"
#include "qcfs/fs/volume.h"
#include "tests/fuzz/fuzz_util.h"

namespace qcfs {
namespace {

// A device in memory that costs nothing to sync (there is no power cut to
// simulate here) and grows sparsely up to a limit, as an image file would
// up to the space of its file system.
class SparseDevice final : public Device {
 public:
  static constexpr uint64_t kLimit = 1ull << 30;

  explicit SparseDevice(uint64_t size) : size_(size) {
    void* p = ::mmap(nullptr, kLimit, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) std::abort();
    base_ = static_cast<std::byte*>(p);
  }
  ~SparseDevice() override { ::munmap(base_, kLimit); }

  uint64_t size() const override { return size_.load(); }
  const std::string& path() const override { return path_; }
  Status Submit(std::span<const IoOp> ops) override {
    const uint64_t size = size_.load();
    Status first;
    for (const IoOp& op : ops) {
      if (op.offset > size || op.length > size - op.offset) {
        if (first.ok()) first = Status::Errorf(EIO, "I/O at offset {} length {} is beyond the end", op.offset, op.length);
        continue;
      }
      if (op.kind == IoOp::Kind::kRead) {
        std::memcpy(op.data, base_ + op.offset, op.length);
      } else {
        std::memcpy(base_ + op.offset, op.data, op.length);
      }
    }
    return first;
  }
  Status Sync() override { return Status::Ok(); }
  Status Discard(uint64_t offset, uint64_t length) override {
    if (offset > size_.load() || length > size_.load() - offset) return Status::Error(EINVAL, "discard beyond the end");
    uint64_t start = (offset + 4095) / 4096 * 4096;
    uint64_t end = (offset + length) / 4096 * 4096;
    if (start >= end) {
      std::memset(base_ + offset, 0, length);
      return Status::Ok();
    }
    std::memset(base_ + offset, 0, start - offset);
    ::madvise(base_ + start, end - start, MADV_DONTNEED);  // reads as zeros again
    std::memset(base_ + end, 0, offset + length - end);
    return Status::Ok();
  }
  Result<uint64_t> Grow(uint64_t size) override {
    if (size > kLimit) return Status::Errorf(EFBIG, "the fuzz device holds at most {} bytes", kLimit);
    uint64_t cur = size_.load();
    while (size > cur && !size_.compare_exchange_weak(cur, size)) {
    }
    return size_.load();
  }

 private:
  std::atomic<uint64_t> size_;
  const std::string path_;
  std::byte* base_ = nullptr;
};

struct World {
  std::string dir;
  std::unique_ptr<Volume> volume;
  std::unique_ptr<ControlServer> server;
  std::string server_path;
  // The fake daemon for mode 1.
  UniqueFd fake_listener;
  std::string fake_path;
  std::mutex answer_mu;  // guards answer
  std::string answer;
};
World* g;

void Must(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "control_fuzzer setup: %s: %s\n", what, s.ToString().c_str());
    std::abort();
  }
}

void WriteFile(Volume* v, std::string_view name, const std::string& content, uint64_t offset) {
  auto attr = v->Lookup(kRootIno, name);
  if (!attr.ok()) attr = v->Create(kRootIno, name, 0644, 0, Caller{});
  else attr = v->Open(attr->ino, O_RDWR);
  Must(attr.status(), "create");
  auto n = v->Write(attr->ino, offset, AsBytes(content));
  Must(n.status(), "write");
  Must(v->Release(attr->ino), "release");
}

// What the live tree holds beyond the snapshot "base".
void ChangeLiveTree(Volume* v) {
  WriteFile(v, "changed", std::string(5000, 'c'), 0);
  WriteFile(v, "a", std::string(70000, 'x'), 65536);
}

int Listen(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 16) != 0) std::abort();
  return fd;
}

int Connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) std::abort();
  while (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno == EISCONN) break;
    if (errno != EINTR) std::abort();
  }
  return fd;
}

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;  // libFuzzer's timer (SIGALRM)
    if (n <= 0) return;
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Everything up to the first newline, or to the end of the stream.
std::string ReceiveLine(int fd) {
  std::string line;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, 30000);
    if (r < 0 && errno == EINTR) continue;  // libFuzzer's timer (SIGALRM)
    if (r <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
    if (auto nl = line.find('\n'); nl != std::string::npos) {
      line.resize(nl);
      break;
    }
  }
  return line;
}

void FakeDaemon() {
  for (;;) {
    UniqueFd client(::accept4(g->fake_listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!client.valid()) continue;
    ReceiveLine(client.get());
    std::string answer;
    {
      std::lock_guard lock(g->answer_mu);
      answer = g->answer;
    }
    SendAll(client.get(), answer);
  }
}

void RemoveDir() { std::filesystem::remove_all(g->dir); }

void Setup() {
  g = new World;
  char tmpl[] = "/tmp/qcfs-control-fuzz-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) std::abort();
  g->dir = tmpl;
  std::atexit(RemoveDir);

  auto device = std::make_unique<SparseDevice>(64ull << 20);
  Must(MkfsOn(device.get(), MkfsOptions{}), "mkfs");
  VolumeOptions options;
  options.cache_bytes = 16ull << 20;
  options.worker_threads = 1;
  auto volume = Volume::OpenOn(std::move(device), options);
  Must(volume.status(), "open");
  g->volume = std::move(volume).value();
  Volume* v = g->volume.get();
  WriteFile(v, "a", std::string(200000, 'a'), 0);
  WriteFile(v, "b", "small file", 0);
  Must(v->CreateSnapshot("base").status(), "snapshot");
  ChangeLiveTree(v);
  Must(v->Sync(), "sync");

  g->server_path = g->dir + "/control.sock";
  auto server = ControlServer::Start(g->server_path, ::getuid(),
                                     [v](const nlohmann::json& request) { return ServeVolumeRequest(v, request); });
  Must(server.status(), "control server");
  g->server = std::move(server).value();

  g->fake_path = g->dir + "/fake.sock";
  g->fake_listener.reset(Listen(g->fake_path));
  std::thread(FakeDaemon).detach();
}

// Deletes the snapshots a request made (and takes "base" again if it was
// deleted); after a restore, changes the live tree again so that diffs keep
// finding something.
void Tidy() {
  Volume* v = g->volume.get();
  auto list = v->ListSnapshots(false);
  Must(list.status(), "list snapshots");
  bool restored = false;
  bool base = false;
  for (const SnapshotInfo& s : *list) {
    base |= s.name == "base";
    if (s.name == "base") continue;
    restored |= s.name.starts_with("before-restore-");
    Must(v->DeleteSnapshot(s.name), "delete snapshot");
  }
  if (!base) Must(v->CreateSnapshot("base").status(), "snapshot");
  if (restored || !base) ChangeLiveTree(v);
}

void ServerRequest(std::string_view line) {
  UniqueFd fd(Connect(g->server_path));
  SendAll(fd.get(), std::string(line) + "\n");
  std::string answer = ReceiveLine(fd.get());
  auto json = nlohmann::json::parse(answer, nullptr, false);
  QCFS_FUZZ_CHECK(!json.is_discarded() && json.is_object(), "the control server's answer is not a JSON object");
  Tidy();
}

void ClientCall(std::string_view answer) {
  {
    std::lock_guard lock(g->answer_mu);
    g->answer = std::string(answer) + "\n";
  }
  // Must return a Result whatever the daemon says; an exception here ends
  // the CLI (or a mount waiting on its predecessor).
  auto r = ControlCall(g->fake_path, {{"op", "info"}}, 30000);
  if (!r.ok()) QCFS_FUZZ_CHECK(r.status().code() != 0, "an error without an errno");
}

void MountRecordFile(std::string_view text) {
  auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded()) return;
  auto rec = MountRecord::FromJson(json);
  if (rec) {
    auto again = MountRecord::FromJson(rec->ToJson());
    QCFS_FUZZ_CHECK(again && again->pid == rec->pid && again->device == rec->device &&
                        again->mountpoint == rec->mountpoint && again->socket == rec->socket &&
                        again->owner == rec->owner && again->closing == rec->closing,
                    "a mount record does not survive ToJson and FromJson");
  }
}

}  // namespace
}  // namespace qcfs

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  qcfs::Setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcfs;
  fuzz::Input in(data, size);
  uint8_t mode = in.U8();
  std::string_view bytes = in.Rest();
  switch (mode % 3) {
    case 0: ServerRequest(bytes); break;
    case 1: ClientCall(bytes); break;
    case 2: MountRecordFile(bytes); break;
  }
  return 0;
}
