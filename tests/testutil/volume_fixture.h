// A formatted image file in a temp dir, and a Volume opened on it.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "qcfs/fs/volume.h"
#include "tests/testutil/temp_dir.h"

namespace qcfs::testing {

class TestVolume {
 public:
  explicit TestVolume(uint64_t size = 256ull << 20, MkfsOptions mkfs = {}, VolumeOptions options = {});
  ~TestVolume();

  Volume* operator->() { return volume_.get(); }
  Volume* get() { return volume_.get(); }
  // Closes (flushing everything) and opens the volume again.
  void Reopen();
  // Closes without flushing and opens again: what survives a killed daemon
  // is what was committed to metadata.
  void Close();
  void Open();

  const std::string& image() const { return image_; }
  TempDir& dir() { return dir_; }
  VolumeOptions& options() { return options_; }

  // Helpers that assert on failure.
  uint64_t CreateFile(uint64_t parent, const std::string& name, const std::string& content = "");
  std::string ReadAll(uint64_t ino);
  void WriteAt(uint64_t ino, uint64_t offset, const std::string& data);

 private:
  TempDir dir_;
  std::string image_;
  VolumeOptions options_;
  std::unique_ptr<Volume> volume_;
};

// Follows a path ("a/b/c") from `root` (the live root or a snapshot's).
Result<Attr> Walk(Volume* v, uint64_t root, const std::string& path);
// "name" or "dir/.../name" below the live root.
Result<Attr> Resolve(Volume* v, const std::string& path);
// The whole content of a file.
Result<std::string> ReadWhole(Volume* v, uint64_t ino);
// The names a directory lists (EXPECTs the listing to succeed).
std::vector<std::string> Names(Volume* v, uint64_t dir);

inline std::span<const std::byte> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace qcfs::testing
