// FuseServer: serves a Volume through libfuse3's low-level API on a
// mountpoint. A thin adapter: each FUSE operation calls one Volume method
// and replies with its result or its errno; no exception crosses into
// libfuse. Kernel cache invalidations that the volume asks for are sent
// from a separate thread, never from inside a request.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "qcfs/core/status.h"
#include "qcfs/fs/volume.h"
#include "qcfs/fuse/mount_options.h"

struct fuse_session;

namespace qcfs {

class FuseServer {
 public:
  // Creates the session and mounts it. REQUIRES: `volume` outlives the server.
  static Result<std::unique_ptr<FuseServer>> Mount(Volume* volume, const std::string& device,
                                                   const std::string& mountpoint, const MountConfig& config);
  FuseServer(const FuseServer&) = delete;
  FuseServer& operator=(const FuseServer&) = delete;
  ~FuseServer();  // unmounts (if still mounted) and destroys the session

  // Serves requests with a pool of threads until the filesystem is
  // unmounted or SIGTERM/SIGINT/SIGHUP arrives.
  Status Run();
  // Detaches the mount; requests still queued fail.
  void Unmount();

  // Ask the kernel to forget what it cached (asynchronously): the attributes
  // of `ino`; its data and attributes; a directory entry.
  void InvalidateAttr(uint64_t ino);
  void InvalidateInode(uint64_t ino);
  void InvalidateEntry(uint64_t parent, const std::string& name);

  Volume* volume() const { return volume_; }
  const MountConfig& config() const { return config_; }

 private:
  FuseServer(Volume* volume, const MountConfig& config) : volume_(volume), config_(config) {}
  void InvalidationLoop();

  Volume* volume_;
  MountConfig config_;
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
  bool signals_installed_ = false;

  struct Invalidation {
    enum class Kind { kAttr, kInode, kEntry } kind;
    uint64_t ino;
    std::string name;
  };
  void Queue(Invalidation inval);

  std::mutex inval_mu_;  // guards inval_queue_, inval_stop_
  std::condition_variable inval_cv_;
  std::deque<Invalidation> inval_queue_;
  bool inval_stop_ = false;
  std::thread inval_thread_;
};

}  // namespace qcfs
