// Superblock::Decode and ReadSuperblock on any bytes.
//
// Input: the primary copy (the first 4 KiB) and the secondary copy (the
// next 4 KiB). Each copy is decoded as given and again with its checksum
// made right, so that the fuzzer reaches the geometry checks behind it.
// Whatever Decode accepts must describe a volume that fits its device and
// must survive Encode and Decode unchanged.
#include <string>

#include "qcfs/io/mem_device.h"
#include "qcfs/store/superblock.h"
#include "tests/fuzz/fuzz_util.h"

namespace qcfs {
namespace {

constexpr size_t kChecksumOffset = 120;

bool SameSuperblock(const Superblock& a, const Superblock& b) {
  return a.format_version == b.format_version && a.incompat_features == b.incompat_features &&
         a.compat_features == b.compat_features && a.uuid == b.uuid && a.device_size == b.device_size &&
         a.chunk_size == b.chunk_size && a.segment_size == b.segment_size && a.compression == b.compression &&
         a.data_offset == b.data_offset && a.segment_count == b.segment_count && a.created_ns == b.created_ns;
}

void CheckAccepted(const Superblock& sb) {
  // The segment area lies inside the device and after the metadata roots.
  unsigned __int128 end = static_cast<unsigned __int128>(sb.data_offset) +
                          static_cast<unsigned __int128>(sb.segment_count) * sb.segment_size;
  QCFS_FUZZ_CHECK(end <= sb.device_size, "an accepted superblock's segments end beyond the device");
  QCFS_FUZZ_CHECK(sb.data_offset >= Superblock::kMetaRootOffset + 2 * kBlockSize,
                  "an accepted superblock's segments overlap the metadata roots");
  QCFS_FUZZ_CHECK(sb.chunk_size >= 4096 && sb.segment_size >= 2 * sb.chunk_size, "impossible chunk geometry");
  auto again = Superblock::Decode(sb.Encode());
  QCFS_FUZZ_CHECK(again.ok(), "an accepted superblock does not decode after Encode");
  QCFS_FUZZ_CHECK(SameSuperblock(sb, *again), "Encode then Decode changes a superblock");
}

void DecodeBoth(std::string block) {
  auto sb = Superblock::Decode(block);
  if (sb.ok()) CheckAccepted(*sb);
  if (block.size() < kChecksumOffset + 8) return;
  StoreLE64(block.data() + kChecksumOffset, Checksum64(fuzz::Span(block).first(kChecksumOffset)));
  sb = Superblock::Decode(block);
  if (sb.ok()) CheckAccepted(*sb);
}

}  // namespace
}  // namespace qcfs

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcfs;
  fuzz::Input in(data, size);
  std::string primary(in.Bytes(kBlockSize));
  std::string secondary(in.Bytes(kBlockSize));
  DecodeBoth(primary);
  DecodeBoth(secondary);

  // The device read: primary, or the secondary when the primary is damaged.
  primary.resize(kBlockSize, '\0');
  secondary.resize(kBlockSize, '\0');
  MemDevice device(2 * kBlockSize);
  device.Poke(0, fuzz::Span(primary));
  device.Poke(Superblock::kSecondaryOffset, fuzz::Span(secondary));
  auto read = ReadSuperblock(&device);
  if (read.ok()) {
    auto p = Superblock::Decode(primary);
    auto s = Superblock::Decode(secondary);
    QCFS_FUZZ_CHECK((p.ok() && SameSuperblock(*p, *read)) || (!p.ok() && s.ok() && SameSuperblock(*s, *read)),
                    "ReadSuperblock returns neither the primary nor, when it is damaged, the secondary");
  }
  return 0;
}
