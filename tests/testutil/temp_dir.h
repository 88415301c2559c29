// A directory under $TMPDIR (or /tmp) removed with everything in it when the
// object goes away.
#pragma once

#include <string>

namespace qcfs::testing {

class TempDir {
 public:
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes `content` to `path`, replacing it.
void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);
// Deterministic pseudo-random bytes; `compressible` repeats short phrases.
std::string RandomBytes(size_t n, uint64_t seed, bool compressible = false);

}  // namespace qcfs::testing
