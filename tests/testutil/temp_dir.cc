#include "tests/testutil/temp_dir.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace qcfs::testing {

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr && *base ? base : "/tmp") + "/qcfs-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string RandomBytes(size_t n, uint64_t seed, bool compressible) {
  std::mt19937_64 rng(seed);
  std::string out;
  out.reserve(n);
  if (!compressible) {
    while (out.size() < n) {
      uint64_t v = rng();
      out.append(reinterpret_cast<const char*>(&v), std::min<size_t>(8, n - out.size()));
    }
    return out;
  }
  static const char* kWords[] = {"storage ", "chunk ", "segment ", "snapshot ", "the ", "of ", "volume ",
                                 "compress ", "dedup ", "metadata ", "\n", "int x = 0; ", "return "};
  while (out.size() < n) {
    out.append(kWords[rng() % (sizeof(kWords) / sizeof(kWords[0]))]);
    if (rng() % 16 == 0) out.append(std::to_string(rng() % 100000));
  }
  out.resize(n);
  return out;
}

}  // namespace qcfs::testing
