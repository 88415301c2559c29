#include "qcfs/store/superblock.h"

#include <blkid/blkid.h>
#include <uuid/uuid.h>

#include <cstring>

#include "qcfs/core/coding.h"
#include "qcfs/core/fingerprint.h"

namespace qcfs {
namespace {

constexpr char kMagic[8] = {'Q', 'C', 'F', 'S', 'S', 'U', 'P', 'R'};
constexpr size_t kChecksumOffset = 120;  // xxh3 of bytes [0, 120)

}  // namespace

std::string Superblock::UuidString() const {
  char buf[37];
  uuid_unparse_lower(uuid.data(), buf);
  return buf;
}

std::string Superblock::Encode() const {
  std::string b(kBlockSize, '\0');
  char* p = b.data();
  std::memcpy(p, kMagic, 8);
  StoreLE32(p + 8, format_version);
  StoreLE32(p + 12, 0);
  StoreLE64(p + 16, incompat_features);
  StoreLE64(p + 24, compat_features);
  std::memcpy(p + 32, uuid.data(), 16);
  StoreLE64(p + 48, device_size);
  StoreLE32(p + 56, static_cast<uint32_t>(kBlockSize));
  StoreLE32(p + 60, chunk_size);
  StoreLE32(p + 64, segment_size);
  p[68] = static_cast<char>(compression.codec);
  p[69] = static_cast<char>(compression.level);
  StoreLE64(p + 72, data_offset);
  StoreLE64(p + 80, segment_count);
  StoreLE64(p + 88, static_cast<uint64_t>(created_ns));
  StoreLE64(p + kChecksumOffset, Checksum64(AsBytes(std::string_view(p, kChecksumOffset))));
  return b;
}

Result<Superblock> Superblock::Decode(std::string_view block) {
  if (block.size() < kChecksumOffset + 8 || std::memcmp(block.data(), kMagic, 8) != 0) {
    return Status::Error(EINVAL, "not a QCFS volume (no QCFS superblock)");
  }
  const char* p = block.data();
  uint64_t stored = LoadLE64(p + kChecksumOffset);
  if (stored != Checksum64(AsBytes(block.substr(0, kChecksumOffset)))) {
    return Status::Error(EUCLEAN, "QCFS superblock checksum mismatch");
  }
  Superblock sb;
  sb.format_version = LoadLE32(p + 8);
  sb.incompat_features = LoadLE64(p + 16);
  sb.compat_features = LoadLE64(p + 24);
  if (sb.format_version > kFormatVersion) {
    return Status::Errorf(EPROTONOSUPPORT,
                          "QCFS format version {} is newer than this qcfs supports ({}); upgrade qcfs to mount it",
                          sb.format_version, kFormatVersion);
  }
  if ((sb.incompat_features & ~kKnownIncompatFeatures) != 0) {
    return Status::Errorf(EPROTONOSUPPORT, "volume uses features this qcfs does not know (0x{:x}); upgrade qcfs",
                          sb.incompat_features & ~kKnownIncompatFeatures);
  }
  std::memcpy(sb.uuid.data(), p + 32, 16);
  sb.device_size = LoadLE64(p + 48);
  uint32_t block_size = LoadLE32(p + 56);
  sb.chunk_size = LoadLE32(p + 60);
  sb.segment_size = LoadLE32(p + 64);
  sb.compression.codec = static_cast<Codec>(p[68]);
  sb.compression.level = static_cast<int8_t>(p[69]);
  sb.data_offset = LoadLE64(p + 72);
  sb.segment_count = LoadLE64(p + 80);
  sb.created_ns = static_cast<int64_t>(LoadLE64(p + 88));
  auto pow2 = [](uint64_t v) { return v != 0 && (v & (v - 1)) == 0; };
  if (block_size != kBlockSize || !pow2(sb.chunk_size) || sb.chunk_size < 4096 || sb.chunk_size > (1u << 20) ||
      !pow2(sb.segment_size) || sb.segment_size > (1u << 30) || sb.segment_size < 2 * sb.chunk_size ||
      sb.data_offset % kBlockSize != 0 || sb.data_offset < kMetaRootOffset + 2 * kBlockSize ||
      static_cast<uint8_t>(sb.compression.codec) > 2 || sb.segment_count > (1ull << 32) ||
      sb.data_offset > sb.device_size ||
      sb.segment_count > (sb.device_size - sb.data_offset) / sb.segment_size) {
    return Status::Error(EUCLEAN, "QCFS superblock holds an impossible geometry");
  }
  return sb;
}

Result<Superblock> ReadSuperblock(Device* device) {
  std::string block(kBlockSize, '\0');
  auto span = std::span<std::byte>(reinterpret_cast<std::byte*>(block.data()), block.size());
  if (device->size() < 2 * kBlockSize) {
    return Status::Errorf(EINVAL, "{}: not a QCFS volume (only {} bytes)", device->path(), device->size());
  }
  QCFS_RETURN_IF_ERROR(device->Read(0, span));
  Result<Superblock> primary = Superblock::Decode(block);
  if (primary.ok() || primary.status().code() == EPROTONOSUPPORT) return primary;
  QCFS_RETURN_IF_ERROR(device->Read(Superblock::kSecondaryOffset, span));
  Result<Superblock> secondary = Superblock::Decode(block);
  if (secondary.ok() || secondary.status().code() == EPROTONOSUPPORT) return secondary;
  return primary.status().WithContext(device->path());
}

Status WriteSuperblock(Device* device, const Superblock& sb) {
  std::string block = sb.Encode();
  auto span = AsBytes(block);
  // One copy at a time: whatever a power cut interrupts, one copy is whole
  // (old or new).
  QCFS_RETURN_IF_ERROR(device->Write(0, span));
  QCFS_RETURN_IF_ERROR(device->Sync());
  QCFS_RETURN_IF_ERROR(device->Write(Superblock::kSecondaryOffset, span));
  return device->Sync();
}

Result<std::string> ProbeExistingSignature(const std::string& path) {
  // Ours first: blkid does not know QCFS.
  {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) return ErrnoStatus(errno, path);
    char magic[8] = {};
    size_t n = std::fread(magic, 1, 8, f);
    std::fclose(f);
    if (n == 8 && std::memcmp(magic, kMagic, 8) == 0) return std::string("qcfs");
  }
  blkid_probe probe = blkid_new_probe_from_filename(path.c_str());
  if (probe == nullptr) return ErrnoStatus(errno ? errno : EIO, "probe " + path);
  blkid_probe_enable_superblocks(probe, 1);
  blkid_probe_set_superblocks_flags(probe, BLKID_SUBLKS_TYPE);
  blkid_probe_enable_partitions(probe, 1);
  blkid_probe_set_partitions_flags(probe, BLKID_PARTS_MAGIC);
  std::string found;
  if (blkid_do_safeprobe(probe) == 0) {
    const char* type = nullptr;
    if (blkid_probe_lookup_value(probe, "TYPE", &type, nullptr) == 0 && type != nullptr) {
      found = type;
    } else if (blkid_probe_lookup_value(probe, "PTTYPE", &type, nullptr) == 0 && type != nullptr) {
      found = std::string("partition table (") + type + ")";
    }
  }
  blkid_free_probe(probe);
  return found;
}

}  // namespace qcfs
