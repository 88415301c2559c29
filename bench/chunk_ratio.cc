// chunk_ratio: what per-chunk compression and dedup can achieve on a tree,
// the yardstick for `qcfs info`. Splits every regular file into aligned
// chunks, keeps each distinct chunk once (SHA-256), compresses each on its
// own, and also times SHA-256 against xxh3-128 (the fingerprint choice).
//
//   chunk_ratio DIR [--chunk-size 64K] [--compression zstd:3]
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <unordered_set>

#include <fmt/core.h>
#include <xxhash.h>

#include "qcfs/core/fingerprint.h"
#include "qcfs/core/units.h"
#include "qcfs/store/chunk_store.h"
#include "qcfs/store/codec.h"

using namespace qcfs;

int main(int argc, char** argv) {
  if (argc < 2) {
    fmt::print(stderr, "usage: chunk_ratio DIR [--chunk-size 64K] [--compression lz4|zstd:N|none]\n");
    return 2;
  }
  std::string dir = argv[1];
  uint64_t chunk = 64 << 10;
  CompressionSpec spec;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--chunk-size") chunk = *ParseSize(argv[i + 1]);
    else if (flag == "--compression") spec = *CompressionSpec::Parse(argv[i + 1]);
  }
  std::unordered_set<Fingerprint, FingerprintHash> seen;
  std::set<std::pair<dev_t, ino_t>> inodes;
  uint64_t files = 0, logical = 0, unique = 0, compressed = 0, chunks = 0, unique_chunks = 0;
  double sha_s = 0, xxh_s = 0, comp_s = 0;
  std::vector<char> buf(chunk);
  std::vector<std::byte> out;
  // Experiment: small distinct chunks compressed together in groups.
  std::vector<std::byte> group;
  uint64_t grouped = 0;
  auto flush_group = [&] {
    if (group.empty()) return;
    Compress(spec, group, &out);
    grouped += out.size();
    group.clear();
  };
  for (auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.is_symlink()) continue;
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0 || !inodes.insert({st.st_dev, st.st_ino}).second) continue;
    ++files;
    std::ifstream in(e.path(), std::ios::binary);
    for (;;) {
      in.read(buf.data(), static_cast<std::streamsize>(chunk));
      size_t n = static_cast<size_t>(in.gcount());
      if (n == 0) break;
      auto data = std::span<const std::byte>(reinterpret_cast<const std::byte*>(buf.data()), n);
      n = TrimmedLength(data);
      if (n == 0) continue;
      data = data.first(n);
      ++chunks;
      logical += n;
      auto t0 = std::chrono::steady_clock::now();
      Fingerprint fp = Fingerprint::Of(data);
      auto t1 = std::chrono::steady_clock::now();
      volatile auto x = XXH3_128bits(data.data(), data.size());
      (void)x;
      auto t2 = std::chrono::steady_clock::now();
      sha_s += std::chrono::duration<double>(t1 - t0).count();
      xxh_s += std::chrono::duration<double>(t2 - t1).count();
      if (!seen.insert(fp).second) continue;
      ++unique_chunks;
      unique += n;
      auto t3 = std::chrono::steady_clock::now();
      Compress(spec, data, &out);
      comp_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t3).count();
      compressed += out.size();
      if (n >= chunk / 2) {
        grouped += out.size();
      } else {
        if (group.size() + n > chunk) flush_group();
        group.insert(group.end(), data.begin(), data.end());
      }
    }
  }
  flush_group();
  const double mib = 1024.0 * 1024.0;
  fmt::print("{}: {} files, {} chunks of {} ({} distinct)\n", dir, files, chunks, FormatSize(chunk), unique_chunks);
  fmt::print("  logical {}  unique {}  compressed {} ({})\n", FormatSize(logical), FormatSize(unique),
             FormatSize(compressed), spec.ToString());
  fmt::print("  dedup {:.2f}x  compression {:.2f}x (each chunk on its own, no headers)\n",
             static_cast<double>(logical) / unique, static_cast<double>(unique) / compressed);
  fmt::print("  small chunks packed {} to a group before compressing: {:.2f}x\n", FormatSize(chunk),
             static_cast<double>(unique) / grouped);
  fmt::print("  SHA-256 {:.0f} MiB/s, xxh3-128 {:.0f} MiB/s, {} {:.0f} MiB/s on one core\n", logical / mib / sha_s,
             logical / mib / xxh_s, spec.ToString(), unique / mib / comp_s);
  return 0;
}
