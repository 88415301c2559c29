// Volumes on an in-memory device, for power-cut and fault tests: the
// device outlives each Volume opened on it, and its fault hook and power
// cuts act under the whole stack.
#pragma once

#include <string>

#include "qcfs/fs/volume.h"
#include "qcfs/io/mem_device.h"
#include "tests/testutil/volume_fixture.h"  // Resolve, ReadWhole

namespace qcfs::testing {

// A Volume owns its device; this one lends it a MemDevice that outlives it.
class LentDevice final : public Device {
 public:
  explicit LentDevice(MemDevice* d) : d_(d) {}
  uint64_t size() const override { return d_->size(); }
  const std::string& path() const override { return d_->path(); }
  Status Submit(std::span<const IoOp> ops) override { return d_->Submit(ops); }
  Status Sync() override { return d_->Sync(); }
  Status Discard(uint64_t offset, uint64_t length) override { return d_->Discard(offset, length); }
  Result<uint64_t> Grow(uint64_t size) override { return d_->Grow(size); }

 private:
  MemDevice* d_;
};

}  // namespace qcfs::testing
