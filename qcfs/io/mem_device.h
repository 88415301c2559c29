// An in-memory Device for tests and fault injection.
//
// It keeps two images: `durable` (what survived the last Sync) and the
// current one. DropUnsynced() throws away every write since the last Sync,
// which is what a power cut does to a disk without a write cache flush.
// A fault hook may fail any operation (EIO, ENOSPC) or let it through.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <vector>

#include "qcfs/io/device.h"

namespace qcfs {

class MemDevice final : public Device {
 public:
  // Called before each op; a non-OK status fails that op without effect.
  using FaultHook = std::function<Status(const IoOp&)>;

  explicit MemDevice(uint64_t size);

  uint64_t size() const override;
  const std::string& path() const override { return path_; }
  bool direct_writes() const override { return direct_writes_.load(); }
  Status Submit(std::span<const IoOp> ops) override;
  Status Sync() override;
  Status Discard(uint64_t offset, uint64_t length) override;
  Result<uint64_t> Grow(uint64_t size) override;

  void SetFaultHook(FaultHook hook);
  // Claims O_DIRECT-like writes (off by default), so that callers shape
  // their writes for them. A direct write that is not block aligned fails
  // with EINVAL, as the kernel's does, whether or not this is on.
  void SetDirectWrites(bool on) { direct_writes_.store(on); }
  // Simulates a power cut: the contents revert to the last Sync.
  void DropUnsynced();
  // A power cut where the writes since the last Sync reached the media in
  // any order: each 4 KiB block written since then keeps its new contents
  // or its old ones, at random (seeded). Returns the blocks that kept the new.
  uint64_t PowerCut(uint64_t seed);
  // Direct access to the bytes, for corrupting them in tests.
  void Poke(uint64_t offset, std::span<const std::byte> bytes);
  void Peek(uint64_t offset, std::span<std::byte> out) const;

  uint64_t writes() const;
  uint64_t syncs() const;

 private:
  std::atomic<bool> direct_writes_{false};
  uint64_t size_;  // guarded by mu_
  const std::string path_;
  mutable std::mutex mu_;  // guards everything below
  std::vector<std::byte> current_;
  std::vector<std::byte> durable_;
  std::set<uint64_t> dirty_;  // 4 KiB blocks written (or discarded) since the last Sync
  void MarkDirty(uint64_t offset, uint64_t length);
  FaultHook hook_;
  uint64_t writes_ = 0;
  uint64_t syncs_ = 0;
};

}  // namespace qcfs
