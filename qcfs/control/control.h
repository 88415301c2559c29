// The control channel of a running mount: a Unix socket over which the CLI
// asks the daemon for `info`, a `sync` and so on, one JSON object per line
// each way. Only root and the user who mounted may connect: the socket is
// mode 0600 and the server checks the peer's credentials (SO_PEERCRED).
//
// Every mount leaves a record (JSON) beside its socket in the runtime
// directory, so that the CLI finds the daemon from a mountpoint or a device
// path. Records of daemons that died are ignored and removed.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "qcfs/core/status.h"
#include "qcfs/core/unique_fd.h"

namespace qcfs {

// Whether `pid` names a live process: not a zombie, and not a zombie
// leader whose last threads are still exiting (they hold its files).
bool ProcessRunning(pid_t pid);

// /run/qcfs for root, $XDG_RUNTIME_DIR/qcfs otherwise; QCFS_RUNTIME_DIR overrides.
std::string RuntimeDir();

struct MountRecord {
  pid_t pid = 0;
  std::string device;      // absolute path
  std::string mountpoint;  // absolute path
  std::string socket;
  std::string uuid;
  uid_t owner = 0;
  // Unmounted; the daemon is still flushing and closing the volume.
  bool closing = false;

  nlohmann::json ToJson() const;
  static std::optional<MountRecord> FromJson(const nlohmann::json& j);
};

// The integer at `key` of a JSON object, or `fallback` when the key is
// absent; nullopt when the value is not an integer within [min, max] (a
// float, a string, out of range), so that no bytes from a peer or a file
// can make a conversion overflow.
std::optional<int64_t> JsonInt(const nlohmann::json& j, const char* key, int64_t fallback, int64_t min, int64_t max);

// Writes the record of a mount (and creates the runtime directory).
Status RegisterMount(const MountRecord& record);
// Removes it (unless a newer mount on the same mountpoint replaced it).
void UnregisterMount(const MountRecord& record);
// Replaces the record of an unmounted volume by a "closing" one, kept until
// its daemon has closed the volume (the next mount of the device waits).
void MarkClosing(MountRecord record);
void UnregisterClosing(const MountRecord& record);
// Live mounts (records whose daemon is gone are removed); with
// `include_closing`, also the daemons still closing an unmounted volume.
std::vector<MountRecord> ListMounts(bool include_closing = false);
// The daemon still closing `device` (an absolute path), if any.
std::optional<MountRecord> FindClosing(const std::string& device);
// The mount whose mountpoint or device is `path` (after realpath), if any.
std::optional<MountRecord> FindMount(const std::string& path);
// The socket path for a mountpoint.
std::string SocketPathFor(const std::string& mountpoint);

class ControlServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

  // Listens on `path` (replacing a stale socket). Requests from peers other
  // than root and `owner` are refused.
  static Result<std::unique_ptr<ControlServer>> Start(const std::string& path, uid_t owner, Handler handler);
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  ~ControlServer();  // stops and removes the socket

 private:
  ControlServer(std::string path, UniqueFd listener, uid_t owner, Handler handler);
  void Loop();
  void Serve(int fd);

  std::string path_;
  UniqueFd listener_;
  UniqueFd wake_read_, wake_write_;
  uid_t owner_;
  Handler handler_;
  std::thread thread_;
  std::mutex active_mu_;  // guards active_
  std::condition_variable active_cv_;
  int active_ = 0;  // requests being served on their own threads
};

// Sends one request and waits (up to timeout_ms) for the answer. A response
// {"error": "...", "errno": N} becomes an error Status.
Result<nlohmann::json> ControlCall(const std::string& socket_path, const nlohmann::json& request,
                                   int timeout_ms = 600000);

// Has the kernel write back what it buffers for a mount (its writeback
// cache) to the daemon: a snapshot, a sync or a figure about stored data
// must see every write made before it. Runs in the caller's process, never
// in the daemon's (it would wait on itself).
Status SyncMount(const std::string& mountpoint);

}  // namespace qcfs
