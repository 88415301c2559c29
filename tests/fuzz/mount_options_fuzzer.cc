// ParseMountOptions on any option lists, as `qcfs mount -o`, mount(8) and
// fstab pass them, and the parsers behind its values (sizes, compression).
//
// Input: the lists, separated by NUL bytes (each as given after one -o).
// What the parser accepts must be within the documented ranges.
#include <string>
#include <vector>

#include "qcfs/core/units.h"
#include "qcfs/fuse/mount_options.h"
#include "qcfs/store/codec.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcfs;
  std::string_view all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lists;
  for (size_t start = 0; start <= all.size() && lists.size() < 64;) {
    size_t end = std::min(all.find('\0', start), all.size());
    lists.emplace_back(all.substr(start, end - start));
    start = end + 1;
  }

  MountConfig config;
  Status s = ParseMountOptions(lists, &config);
  if (s.ok()) {
    const VolumeOptions& v = config.volume;
    QCFS_FUZZ_CHECK(v.cache_bytes >= (16u << 20), "cache_size below 16M accepted");
    QCFS_FUZZ_CHECK(v.flush_interval_ms >= 1000 && v.flush_interval_ms <= 600000, "flush_interval out of range");
    if (v.compression) {
      QCFS_FUZZ_CHECK(static_cast<uint8_t>(v.compression->codec) <= 2, "unknown codec accepted");
      if (v.compression->codec == Codec::kZstd) {
        QCFS_FUZZ_CHECK(v.compression->level >= 1 && v.compression->level <= 19, "zstd level out of range");
      }
      auto again = CompressionSpec::Parse(v.compression->ToString());
      QCFS_FUZZ_CHECK(again.ok() && *again == *v.compression, "a compression spec does not survive ToString");
    }
  } else {
    QCFS_FUZZ_CHECK(s.code() == EINVAL && !s.message().empty(), "a refused option is not EINVAL with a message");
  }

  // The value parsers on their own, on each list as a whole.
  for (const std::string& list : lists) {
    if (auto size = ParseSize(list); size.ok()) FormatSize(*size);
    if (auto spec = CompressionSpec::Parse(list); spec.ok()) {
      auto again = CompressionSpec::Parse(spec->ToString());
      QCFS_FUZZ_CHECK(again.ok() && *again == *spec, "compression spec round trip");
    }
  }
  return 0;
}
