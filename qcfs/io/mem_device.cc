#include "qcfs/io/mem_device.h"

#include <algorithm>
#include <cstring>
#include <random>

namespace qcfs {

namespace {
constexpr uint64_t kBlock = 4096;
}  // namespace

void MemDevice::MarkDirty(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  for (uint64_t b = offset / kBlock; b <= (offset + length - 1) / kBlock; ++b) dirty_.insert(b);
}

MemDevice::MemDevice(uint64_t size) : size_(size), current_(size), durable_(size) {}

Status MemDevice::Submit(std::span<const IoOp> ops) {
  std::lock_guard lock(mu_);
  Status first;
  for (const IoOp& op : ops) {
    if (op.offset > size_ || op.length > size_ - op.offset) {
      if (first.ok()) first = Status::Errorf(EIO, "I/O at offset {} length {} is beyond the end of the device", op.offset, op.length);
      continue;
    }
    if (op.direct && (op.offset % kBlock != 0 || op.length % kBlock != 0 ||
                      reinterpret_cast<uintptr_t>(op.data) % kBlock != 0)) {
      if (first.ok()) first = Status::Errorf(EINVAL, "direct write at offset {} length {} is not block aligned", op.offset, op.length);
      continue;
    }
    if (hook_) {
      Status s = hook_(op);
      if (!s.ok()) {
        if (first.ok()) first = s;
        continue;
      }
    }
    if (op.kind == IoOp::Kind::kRead) {
      std::memcpy(op.data, current_.data() + op.offset, op.length);
    } else {
      std::memcpy(current_.data() + op.offset, op.data, op.length);
      MarkDirty(op.offset, op.length);
      ++writes_;
    }
  }
  return first;
}

Status MemDevice::Sync() {
  std::lock_guard lock(mu_);
  if (hook_) {
    IoOp sync_op{IoOp::Kind::kWrite, 0, nullptr, 0};
    QCFS_RETURN_IF_ERROR(hook_(sync_op));
  }
  for (uint64_t b : dirty_) {
    const uint64_t off = b * kBlock, len = std::min(kBlock, size_ - off);
    std::memcpy(durable_.data() + off, current_.data() + off, len);
  }
  dirty_.clear();
  ++syncs_;
  return Status::Ok();
}

uint64_t MemDevice::size() const {
  std::lock_guard lock(mu_);
  return size_;
}

Result<uint64_t> MemDevice::Grow(uint64_t size) {
  std::lock_guard lock(mu_);
  if (size > size_) {
    size_ = size;
    current_.resize(size);
    durable_.resize(size);
  }
  return size_;
}

Status MemDevice::Discard(uint64_t offset, uint64_t length) {
  std::lock_guard lock(mu_);
  if (offset > size_ || length > size_ - offset) return Status::Error(EINVAL, "discard beyond the end of the device");
  std::memset(current_.data() + offset, 0, length);
  MarkDirty(offset, length);
  return Status::Ok();
}

void MemDevice::SetFaultHook(FaultHook hook) {
  std::lock_guard lock(mu_);
  hook_ = std::move(hook);
}

void MemDevice::DropUnsynced() {
  std::lock_guard lock(mu_);
  for (uint64_t b : dirty_) {
    const uint64_t off = b * kBlock, len = std::min(kBlock, size_ - off);
    std::memcpy(current_.data() + off, durable_.data() + off, len);
  }
  dirty_.clear();
}

uint64_t MemDevice::PowerCut(uint64_t seed) {
  std::lock_guard lock(mu_);
  std::mt19937_64 rng(seed);
  uint64_t kept = 0;
  for (uint64_t b : dirty_) {
    const uint64_t off = b * kBlock, len = std::min(kBlock, size_ - off);
    if (rng() % 2 == 0) {
      std::memcpy(current_.data() + off, durable_.data() + off, len);
    } else {
      std::memcpy(durable_.data() + off, current_.data() + off, len);
      ++kept;
    }
  }
  dirty_.clear();
  return kept;
}

void MemDevice::Poke(uint64_t offset, std::span<const std::byte> bytes) {
  std::lock_guard lock(mu_);
  std::memcpy(current_.data() + offset, bytes.data(), bytes.size());
  std::memcpy(durable_.data() + offset, bytes.data(), bytes.size());
}

void MemDevice::Peek(uint64_t offset, std::span<std::byte> out) const {
  std::lock_guard lock(mu_);
  std::memcpy(out.data(), current_.data() + offset, out.size());
}

uint64_t MemDevice::writes() const {
  std::lock_guard lock(mu_);
  return writes_;
}

uint64_t MemDevice::syncs() const {
  std::lock_guard lock(mu_);
  return syncs_;
}

}  // namespace qcfs
