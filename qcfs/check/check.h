// qcfs check: verifies every invariant of an unmounted volume and every
// chunk's checksum, and optionally repairs what can be repaired without
// guessing: reference counts, segment usage, statistics, leaked chunks,
// stale index entries, link counts, unreachable inodes (moved to
// /lost+found). Damaged data is reported with the paths of the files that
// hold it and is never deleted.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qcfs/core/status.h"
#include "qcfs/io/device.h"

namespace qcfs {

struct CheckOptions {
  bool repair = false;
  // Read every chunk and verify its checksum (default). With `full`, also
  // decompress it and verify its fingerprint (SHA-256).
  bool verify_data = true;
  bool full = false;
  // Called now and then while chunks are verified: (done, total).
  std::function<void(uint64_t, uint64_t)> progress;
};

struct CheckFinding {
  std::string kind;    // "refcount", "damaged-chunk", "leaked-chunk", "nlink", ...
  std::string detail;  // one line a user can act on
  std::vector<std::string> paths;  // files affected, when known
  bool repaired = false;
};

struct CheckReport {
  uint64_t inodes = 0;
  uint64_t directories = 0;
  uint64_t files = 0;
  uint64_t extents = 0;
  uint64_t chunks = 0;
  uint64_t chunks_verified = 0;
  uint64_t bytes_verified = 0;  // stored bytes read and checked
  uint64_t snapshots = 0;
  uint64_t kept_versions = 0;   // versions kept for snapshots
  std::vector<CheckFinding> findings;
  std::vector<std::string> notes;  // not problems: things the next mount finishes

  bool clean() const { return findings.empty(); }
  uint64_t unrepaired() const;
};

// Checks the volume on `device`, which must not be mounted.
Result<CheckReport> CheckVolume(const std::string& device, const CheckOptions& options);
// The same on a device already open (tests use an in-memory one).
Result<CheckReport> CheckVolumeOn(std::unique_ptr<Device> device, const CheckOptions& options);

}  // namespace qcfs
