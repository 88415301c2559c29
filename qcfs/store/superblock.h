// The superblock: the first block of every QCFS device, and a copy of it in
// the second block. It names the format and the volume's fixed geometry.
//
// Layout of the device:
//   [0, 4 KiB)          superblock (primary)
//   [4 KiB, 8 KiB)      superblock (secondary copy)
//   [8 KiB, 16 KiB)     metadata roots (two, see meta/metafs.h)
//   [16 KiB, data_offset) reserved, zero
//   [data_offset, ...)  segment_count segments of segment_size bytes
//
// Both copies are written at mkfs and rewritten only when the volume grows.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "qcfs/core/status.h"
#include "qcfs/io/device.h"
#include "qcfs/store/codec.h"

namespace qcfs {

struct Superblock {
  static constexpr uint32_t kFormatVersion = 1;
  static constexpr uint64_t kSecondaryOffset = 4096;
  static constexpr uint64_t kMetaRootOffset = 8192;
  static constexpr uint64_t kDefaultDataOffset = 1ull << 20;
  // Incompatible feature: raw chunks may be stored in record format 2 (a
  // checksum per 4 KiB block) and inode records in format 2 (flags). Set at
  // mkfs, and by the first read-write open of an older volume, before
  // anything in those formats is written: a qcfs that reads neither refuses
  // the volume instead of failing its reads.
  static constexpr uint64_t kIncompatBlockSums = 1;
  // Incompatible feature: the metadata journal may hold records of its files'
  // block checksums and mirror extents (MetaFs keeps its files twice). Set at
  // mkfs, and by the first read-write open of an older volume before MetaFs
  // writes anything: a qcfs that cannot replay those records refuses the
  // volume with this bit named instead of calling its journal malformed.
  static constexpr uint64_t kIncompatMetaFileCopies = 2;
  // Incompatible features this build understands.
  static constexpr uint64_t kKnownIncompatFeatures = kIncompatBlockSums | kIncompatMetaFileCopies;

  uint32_t format_version = kFormatVersion;
  uint64_t incompat_features = 0;  // a bit this build does not know refuses the mount
  uint64_t compat_features = 0;
  std::array<uint8_t, 16> uuid{};
  uint64_t device_size = 0;     // bytes the volume spans (at mkfs, or its last resize)
  uint32_t chunk_size = 64 << 10;
  uint32_t segment_size = 4 << 20;
  CompressionSpec compression;  // default for new chunks
  uint64_t data_offset = kDefaultDataOffset;
  uint64_t segment_count = 0;
  int64_t created_ns = 0;

  std::string UuidString() const;
  uint64_t SegmentOffset(uint32_t segment) const { return data_offset + uint64_t{segment} * segment_size; }
  uint64_t DataCapacity() const { return segment_count * segment_size; }

  // A 4 KiB block with magic, fields and a checksum.
  std::string Encode() const;
  // Fails with EINVAL "not a QCFS volume", EUCLEAN on checksum mismatch, or
  // EPROTONOSUPPORT for a newer format or unknown incompatible features.
  static Result<Superblock> Decode(std::string_view block);
};

// Reads the primary superblock, falling back to the secondary when the
// primary is damaged.
Result<Superblock> ReadSuperblock(Device* device);
// Writes both copies, one after the other, each synced.
Status WriteSuperblock(Device* device, const Superblock& sb);

// Names the file system or partition table already on the device ("ext4",
// "xfs", "btrfs", "qcfs", "dos"...), or "" when none is recognised.
Result<std::string> ProbeExistingSignature(const std::string& path);

}  // namespace qcfs
