// Device over an image file or block device, driven through io_uring.
//
// Each calling thread owns one ring (thread_local), so FUSE worker threads
// and flusher threads never contend on a submission queue. A batch is
// submitted with one io_uring_submit_and_wait per ring-full of operations;
// short transfers are resubmitted for the remainder.
//
// A writable device also holds a second descriptor opened O_DIRECT, for
// IoOp::direct writes. Written through the page cache and then synced, an
// image file goes to the disk in one burst at fdatasync, at a fraction of the
// disk's speed (on the reference machine 330 MiB/s against 1.5 GiB/s with
// O_DIRECT, both syncing every 64 MiB). Reads stay buffered: the kernel keeps
// the page cache coherent with direct writes to the same file.
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <vector>

#include "qcfs/core/unique_fd.h"
#include "qcfs/io/device.h"

namespace qcfs {
namespace {

constexpr unsigned kRingDepth = 128;

class Ring {
 public:
  Ring() { init_error_ = -io_uring_queue_init(kRingDepth, &ring_, 0); }
  ~Ring() {
    if (init_error_ == 0) io_uring_queue_exit(&ring_);
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  int init_error() const { return init_error_; }
  io_uring* get() { return &ring_; }

 private:
  io_uring ring_{};
  int init_error_ = 0;
};

Ring& ThreadRing() {
  thread_local Ring ring;
  return ring;
}

struct Pending {
  const IoOp* op;
  size_t done;  // bytes transferred so far
};

class UringDevice final : public Device {
 public:
  UringDevice(std::string path, UniqueFd fd, UniqueFd direct_fd, uint64_t size, bool block)
      : path_(std::move(path)), fd_(std::move(fd)), direct_fd_(std::move(direct_fd)), size_(size), block_(block) {}

  uint64_t size() const override { return size_.load(std::memory_order_acquire); }
  const std::string& path() const override { return path_; }
  bool is_block_device() const override { return block_; }
  bool direct_writes() const override { return direct_fd_.valid(); }

  Status Submit(std::span<const IoOp> ops) override {
    for (const IoOp& op : ops) {
      const uint64_t size = size_.load(std::memory_order_acquire);
      if (op.offset > size || op.length > size - op.offset) {
        return Status::Errorf(EIO, "{}: I/O at offset {} length {} is beyond the end of the device ({} bytes)",
                              path_, op.offset, op.length, size);
      }
    }
    Ring& ring = ThreadRing();
    if (ring.init_error() != 0) return ErrnoStatus(ring.init_error(), "io_uring_queue_init");
    io_uring* r = ring.get();

    // Direct writes run after the rest, and never while another thread's
    // buffered write runs: see mode_mu_.
    std::vector<Pending> cached, direct;
    for (const IoOp& op : ops) {
      if (op.length == 0) continue;
      Pending p{&op, 0};
      (op.kind == IoOp::Kind::kWrite && WriteFd(p) == direct_fd_.get() ? direct : cached).push_back(p);
    }
    Status first_error;
    if (!cached.empty()) {
      const bool writes = std::any_of(cached.begin(), cached.end(),
                                      [](const Pending& p) { return p.op->kind == IoOp::Kind::kWrite; });
      std::shared_lock<std::shared_mutex> lock(mode_mu_, std::defer_lock);
      if (writes) lock.lock();
      first_error = RunQueue(r, std::move(cached));
    }
    if (!direct.empty()) {
      std::unique_lock<std::shared_mutex> lock(mode_mu_);
      Status s = RunQueue(r, std::move(direct));
      if (first_error.ok()) first_error = s;
    }
    return first_error;
  }

  Status Sync() override {
    if (::fdatasync(fd_.get()) != 0) return ErrnoStatus(errno, "fdatasync " + path_);
    return Status::Ok();
  }

  Status Discard(uint64_t offset, uint64_t length) override {
    if (length == 0) return Status::Ok();
    if (block_) {
      uint64_t range[2] = {offset, length};
      if (::ioctl(fd_.get(), BLKDISCARD, range) != 0) {
        if (errno == EOPNOTSUPP || errno == ENOTTY) return Status::Ok();  // the device cannot discard
        return ErrnoStatus(errno, "BLKDISCARD " + path_);
      }
      return Status::Ok();
    }
    if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(length)) != 0) {
      if (errno == EOPNOTSUPP) return Status::Ok();  // the host file system cannot punch holes
      return ErrnoStatus(errno, "punch hole in " + path_);
    }
    return Status::Ok();
  }

  Result<uint64_t> Grow(uint64_t size) override {
    std::lock_guard lock(grow_mu_);
    uint64_t beneath = 0;
    if (block_) {
      if (::ioctl(fd_.get(), BLKGETSIZE64, &beneath) != 0) return ErrnoStatus(errno, "BLKGETSIZE64 " + path_);
    } else {
      struct stat st {};
      if (::fstat(fd_.get(), &st) != 0) return ErrnoStatus(errno, "stat " + path_);
      beneath = static_cast<uint64_t>(st.st_size);
    }
    if (size == 0) size = beneath;
    if (size > beneath) {
      if (block_) {
        return Status::Errorf(ENOSPC, "{} holds only {} bytes; grow the partition or volume beneath it first", path_,
                              beneath);
      }
      if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) return ErrnoStatus(errno, "extend " + path_);
      if (::fsync(fd_.get()) != 0) return ErrnoStatus(errno, "fsync " + path_);
    }
    size_.store(std::max(size, size_.load()), std::memory_order_release);
    return size_.load();
  }

 private:
  // Runs every op of `queue`, a ring-full at a time, until each is done or
  // has failed; the first error wins.
  Status RunQueue(io_uring* r, std::vector<Pending> queue) {
    Status first_error;
    size_t next = 0;  // index into queue of the next op to submit
    std::vector<Pending> retry;
    while (next < queue.size()) {
      unsigned batch = 0;
      while (next < queue.size() && batch < kRingDepth) {
        io_uring_sqe* sqe = io_uring_get_sqe(r);
        if (sqe == nullptr) break;
        Pending* p = &queue[next];
        const IoOp* op = p->op;
        if (op->kind == IoOp::Kind::kRead) {
          io_uring_prep_read(sqe, fd_.get(), op->data + p->done, static_cast<unsigned>(op->length - p->done),
                             op->offset + p->done);
        } else {
          io_uring_prep_write(sqe, WriteFd(*p), op->data + p->done, static_cast<unsigned>(op->length - p->done),
                              op->offset + p->done);
        }
        io_uring_sqe_set_data(sqe, p);
        ++next;
        ++batch;
      }
      int rc = io_uring_submit_and_wait(r, batch);
      if (rc < 0) return ErrnoStatus(-rc, "io_uring_submit_and_wait");
      for (unsigned i = 0; i < batch; ++i) {
        io_uring_cqe* cqe = nullptr;
        rc = io_uring_wait_cqe(r, &cqe);
        if (rc < 0) return ErrnoStatus(-rc, "io_uring_wait_cqe");
        auto* p = static_cast<Pending*>(io_uring_cqe_get_data(cqe));
        int res = cqe->res;
        io_uring_cqe_seen(r, cqe);
        const IoOp* op = p->op;
        if (res < 0) {
          if (res == -EINTR || res == -EAGAIN) {
            retry.push_back(*p);
            continue;
          }
          if (first_error.ok()) {
            first_error = Status::Errorf(-res, "{}: {} at offset {} length {}: {}", path_,
                                         op->kind == IoOp::Kind::kRead ? "read" : "write", op->offset + p->done,
                                         op->length - p->done, std::strerror(-res));
          }
          continue;
        }
        p->done += static_cast<size_t>(res);
        if (p->done < op->length) {
          if (res == 0) {
            if (op->kind == IoOp::Kind::kRead) {
              // Past the end of a file that is shorter than the device: zeros.
              std::memset(op->data + p->done, 0, op->length - p->done);
            } else if (first_error.ok()) {
              first_error = Status::Errorf(EIO, "{}: write at offset {} made no progress", path_, op->offset + p->done);
            }
            continue;
          }
          retry.push_back(*p);
        }
      }
      if (next == queue.size() && !retry.empty()) {
        queue = std::move(retry);
        retry.clear();
        next = 0;
      }
    }
    return first_error;
  }

  // The descriptor for the rest of a write: direct while what remains is
  // still block aligned (a short direct transfer may leave it otherwise).
  int WriteFd(const Pending& p) const {
    if (!p.op->direct || !direct_fd_.valid()) return fd_.get();
    const uint64_t rest = p.op->length - p.done;
    const auto addr = reinterpret_cast<uintptr_t>(p.op->data + p.done);
    const bool aligned = (p.op->offset + p.done) % kBlockSize == 0 && rest % kBlockSize == 0 && addr % kBlockSize == 0;
    return aligned ? direct_fd_.get() : fd_.get();
  }

  std::string path_;
  UniqueFd fd_;
  UniqueFd direct_fd_;  // O_DIRECT, for IoOp::direct writes; invalid where unsupported or read-only
  // Held shared by buffered writes and exclusively by direct writes. After a
  // direct write the kernel drops the cached pages it covered; a page cache
  // folio can be larger than a block (up to 2 MiB with large readahead) and
  // span a metadata segment and a data segment, and if a buffered write
  // dirties it while the direct write is in flight, the kernel cannot drop
  // it and fails the file's next fdatasync with EIO. Reads need no lock.
  std::shared_mutex mode_mu_;
  std::atomic<uint64_t> size_;
  bool block_;
  std::mutex grow_mu_;
};

}  // namespace

Result<std::unique_ptr<Device>> OpenDevice(const std::string& path, const DeviceOptions& options) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, path);
  bool block = S_ISBLK(st.st_mode);
  if (!block && !S_ISREG(st.st_mode)) {
    return Status::Errorf(EINVAL, "{}: not a regular file or block device", path);
  }
  int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (block && options.exclusive && !options.read_only) flags |= O_EXCL;
  UniqueFd fd(::open(path.c_str(), flags));
  if (!fd.valid()) {
    if (errno == EBUSY) return Status::Errorf(EBUSY, "{}: device is busy (mounted or in use)", path);
    return ErrnoStatus(errno, "open " + path);
  }
  if (options.exclusive) {
    if (::flock(fd.get(), (options.read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) {
        return Status::Errorf(EBUSY, "{}: volume is in use by another process (mounted?)", path);
      }
      return ErrnoStatus(errno, "flock " + path);
    }
  }
  uint64_t size = 0;
  if (block) {
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) return ErrnoStatus(errno, "BLKGETSIZE64 " + path);
  } else {
    size = static_cast<uint64_t>(st.st_size);
  }
  UniqueFd direct_fd;
  if (!options.read_only) {
    // Not O_EXCL: the first descriptor holds the claim. Without O_DIRECT
    // (tmpfs, some FUSE hosts) every write goes through the page cache.
    // Reopened through /proc so that both descriptors name the same file.
    const std::string self = "/proc/self/fd/" + std::to_string(fd.get());
    direct_fd = UniqueFd(::open(self.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  }
  return std::unique_ptr<Device>(new UringDevice(path, std::move(fd), std::move(direct_fd), size, block));
}

Status CreateImageFile(const std::string& path, uint64_t size, bool truncate_existing) {
  int flags = O_RDWR | O_CREAT | O_CLOEXEC | (truncate_existing ? 0 : O_EXCL);
  UniqueFd fd(::open(path.c_str(), flags, 0644));
  if (!fd.valid()) {
    if (errno == EEXIST) return Status::Errorf(EEXIST, "{}: file exists", path);
    return ErrnoStatus(errno, "create " + path);
  }
  if (truncate_existing && ::ftruncate(fd.get(), 0) != 0) return ErrnoStatus(errno, "truncate " + path);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return ErrnoStatus(errno, "size " + path);
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync " + path);
  return Status::Ok();
}

}  // namespace qcfs
