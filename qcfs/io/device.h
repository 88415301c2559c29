// The device under a volume: a regular image file or a block device.
//
// Every read and write of volume data goes through a Device. The real
// implementation submits batches to io_uring; MemDevice (mem_device.h) keeps
// the bytes in memory and can drop unsynced writes to simulate a power cut.
//
// Thread-safety: all methods may be called concurrently. Writes to
// overlapping ranges from different threads are the caller's problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "qcfs/core/status.h"

namespace qcfs {

// The unit of alignment and allocation on the device.
inline constexpr uint64_t kBlockSize = 4096;

// One read or write in a batch. The buffer must stay valid until Submit returns.
struct IoOp {
  enum class Kind { kRead, kWrite };
  Kind kind = Kind::kRead;
  uint64_t offset = 0;
  std::byte* data = nullptr;  // for writes the bytes are only read
  size_t length = 0;
  // A write that may bypass the host's page cache (O_DIRECT): the bytes go to
  // the disk as Submit runs, not in one burst at the next Sync, so a caller
  // that writes and then syncs large runs (the chunk store) gets the disk's
  // speed. REQUIRES: offset, length and data are multiples of kBlockSize.
  bool direct = false;

  static IoOp Read(uint64_t offset, std::span<std::byte> buf) { return {Kind::kRead, offset, buf.data(), buf.size()}; }
  static IoOp Write(uint64_t offset, std::span<const std::byte> buf) {
    return {Kind::kWrite, offset, const_cast<std::byte*>(buf.data()), buf.size()};
  }
  // REQUIRES: offset, buf.data() and buf.size() are multiples of kBlockSize.
  static IoOp DirectWrite(uint64_t offset, std::span<const std::byte> buf) {
    return {Kind::kWrite, offset, const_cast<std::byte*>(buf.data()), buf.size(), true};
  }
};

class Device {
 public:
  virtual ~Device() = default;

  // Size in bytes.
  virtual uint64_t size() const = 0;
  // Path it was opened from ("" for in-memory devices).
  virtual const std::string& path() const = 0;
  virtual bool is_block_device() const { return false; }
  // Whether IoOp::direct writes really bypass the cache; where they cannot
  // (a host file system without O_DIRECT, an in-memory device) they are
  // written like any other, so shaping writes for them buys nothing.
  virtual bool direct_writes() const { return false; }

  // Runs every op of the batch; returns when all have completed. A read past
  // the end of an image file yields zeros. The first error wins; the others
  // still run.
  virtual Status Submit(std::span<const IoOp> ops) = 0;

  // Makes every completed write durable (fdatasync).
  virtual Status Sync() = 0;

  // Tells the device that [offset, offset+length) holds nothing: punches a
  // hole in an image file, BLKDISCARD on a block device. Reads of the range
  // afterwards return zeros or old bytes; callers must not depend on either.
  virtual Status Discard(uint64_t offset, uint64_t length) = 0;

  // Makes the device `size` bytes long, or as long as what lies beneath it
  // with 0 (an image file's current length, a block device's current
  // capacity, for a partition grown since open). An image file is extended
  // (sparsely), never shortened; a block device must already be that large.
  // Returns the new size.
  virtual Result<uint64_t> Grow(uint64_t size) = 0;

  Status Read(uint64_t offset, std::span<std::byte> buf) {
    IoOp op = IoOp::Read(offset, buf);
    return Submit({&op, 1});
  }
  Status Write(uint64_t offset, std::span<const std::byte> buf) {
    IoOp op = IoOp::Write(offset, buf);
    return Submit({&op, 1});
  }
};

struct DeviceOptions {
  // Open without write access.
  bool read_only = false;
  // Take an exclusive advisory lock (flock) so that two processes never open
  // one volume read-write; block devices are also opened O_EXCL.
  bool exclusive = true;
};

// Opens an image file or a block device. Fails with EBUSY when another
// process holds the volume.
Result<std::unique_ptr<Device>> OpenDevice(const std::string& path, const DeviceOptions& options);

// Creates (or resizes) a sparse image file of the given size. Fails with
// EEXIST when a file is there and `truncate_existing` is false.
Status CreateImageFile(const std::string& path, uint64_t size, bool truncate_existing);

}  // namespace qcfs
