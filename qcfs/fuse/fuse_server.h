// FuseServer: serves a Volume through libfuse3's low-level API on a
// mountpoint. A thin adapter: each FUSE operation calls one Volume method
// and replies with its result or its errno; no exception crosses into
// libfuse. Kernel cache invalidations that the volume asks for are sent
// from a separate thread, never from inside a request.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "qcfs/core/status.h"
#include "qcfs/fs/volume.h"
#include "qcfs/fuse/mount_options.h"
#include "qcfs/fuse/space_guard.h"

struct fuse_session;
struct fuse_conn_info;
struct iovec;

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
  // Returns once every invalidation asked for before the call has reached
  // the kernel (or the server is stopping). REQUIRES: not called from a FUSE
  // request: delivering one may wait on requests in flight.
  void WaitForInvalidations();
  // A restore replaced `ino`: later lookups give it a new generation, so
  // that the kernel drops the inode it cached (with the writeback cache the
  // kernel trusts its own file size over ours) instead of reusing it.
  // Descriptors still open on the old inode then fail with EIO.
  void ReplaceInode(uint64_t ino);
  uint64_t Generation(uint64_t ino);

  // Called by libfuse at FUSE_INIT: chooses what the daemon asks for.
  void Negotiate(::fuse_conn_info* conn);
  // What the kernel and the daemon agreed on at FUSE_INIT.
  bool writeback_cache() const { return writeback_cache_.load(); }
  bool kills_privileges() const { return killpriv_.load(); }

  Volume* volume() const { return volume_; }
  const MountConfig& config() const { return config_; }

  // Called with the length of every WRITE request, from the thread serving
  // it. REQUIRES: set before Run(); cheap, and never blocks on the mount.
  void ObserveWrites(std::function<void(size_t)> observer) { write_observer_ = std::move(observer); }
  const std::function<void(size_t)>& write_observer() const { return write_observer_; }
  // Called, from the server's own thread, with the most bytes the kernel
  // may hold dirty for the mount while the volume is nearly full, and with
  // 0 when it is not any more (the daemon's own limits apply again).
  // REQUIRES: set before Run().
  void OnDirtyCap(std::function<void(uint64_t)> handler) { dirty_cap_handler_ = std::move(handler); }
  // The share of the system's dirty threshold, in percent, that the
  // daemon's own dirty limit lets the kernel hold for the mount now (100
  // when unset). REQUIRES: set before Run(); cheap and thread-safe.
  void DirtyShare(std::function<uint32_t()> share) { dirty_share_ = std::move(share); }
  // The attribute timeout for replies about an inode of this mode: none for
  // regular files while the volume is nearly full (SpaceGuard).
  double AttrTimeout(uint32_t mode) const;
  // Whether a write the kernel is about to cache may go ahead (SpaceGuard);
  // may wait up to two of the guard's ticks.
  bool AdmitCachedWrite();
  // A handle open for writing on `ino` was opened (+1) or released (-1).
  void OpenedForWriting(uint64_t ino, int delta);

 private:
  FuseServer(Volume* volume, const MountConfig& config) : volume_(volume), config_(config) {}
  void InvalidationLoop();
  // Feeds the SpaceGuard: at FUSE_INIT, then from the invalidation thread
  // every 250 ms. Takes space_mu_ (one tick at a time), then writers_mu_.
  void SpaceTick();
  std::mutex space_mu_;

  // The session's I/O on /dev/fuse passes through these two, so that the
  // daemon can take FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14 does not
  // negotiate, and see the kernel's "clear set-ID bits" flag on writes.
  static ssize_t ReadRequest(int fd, void* buf, size_t size, void* self);
  static ssize_t WriteReply(int fd, ::iovec* iov, int count, void* self);

  Volume* volume_;
  MountConfig config_;
  std::function<void(size_t)> write_observer_;
  std::function<void(uint64_t)> dirty_cap_handler_;
  std::function<uint32_t()> dirty_share_;
  SpaceGuard space_guard_;
  std::mutex writers_mu_;  // guards open_writers_
  std::unordered_map<uint64_t, int> open_writers_;  // inode -> handles open for writing
  fuse_session* session_ = nullptr;
  bool mounted_ = false;
  bool signals_installed_ = false;

  struct Invalidation {
    enum class Kind { kAttr, kInode, kEntry } kind;
    uint64_t ino;
    std::string name;
  };
  void Queue(Invalidation inval);

  // guards inval_queue_, inval_stop_, inval_queued_, inval_done_, space_ticks_
  std::mutex inval_mu_;
  std::condition_variable inval_cv_;
  std::condition_variable inval_done_cv_;
  std::deque<Invalidation> inval_queue_;
  bool inval_stop_ = false;
  uint64_t space_ticks_ = 0;  // the space guard's ticks so far (inval_done_cv_ signals each)
  uint64_t inval_queued_ = 0;  // invalidations ever queued
  uint64_t inval_done_ = 0;    // of those, delivered to the kernel
  std::thread inval_thread_;

  std::atomic<uint64_t> init_unique_{0};    // the FUSE_INIT request, until answered
  std::atomic<uint64_t> kernel_flags_{0};   // what the kernel offered at FUSE_INIT
  std::atomic<bool> writeback_cache_{false};
  std::atomic<bool> killpriv_{false};
  bool kernel_permissions_ = false;  // default_permissions; set before the session starts

  std::mutex generation_mu_;  // guards generations_
  std::unordered_map<uint64_t, uint64_t> generations_;  // inodes replaced by restores; others are 1
  uint64_t next_generation_ = 2;
  std::atomic<bool> any_replaced_{false};  // generations_ is not empty
};

}  // namespace qcfs
