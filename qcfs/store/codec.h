// Compression of chunk payloads: LZ4 (default), ZSTD at a level, or none.
// A chunk that does not shrink is stored raw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qcfs/core/status.h"

namespace qcfs {

enum class Codec : uint8_t { kNone = 0, kLz4 = 1, kZstd = 2 };

struct CompressionSpec {
  Codec codec = Codec::kLz4;
  int level = 0;  // zstd: 1..19 (0 means 3); ignored for lz4 and none

  // "lz4", "zstd:3", "none".
  std::string ToString() const;
  // Accepts "lz4", "zstd", "zstd:LEVEL" (1-19), "none"/"off".
  static Result<CompressionSpec> Parse(std::string_view text);
  friend bool operator==(const CompressionSpec&, const CompressionSpec&) = default;
};

// Compresses `in` into `out` (resized). Returns the codec actually used:
// kNone when compression would not save at least 1/32 of the bytes, in
// which case `out` holds a copy of `in`.
Codec Compress(const CompressionSpec& spec, std::span<const std::byte> in, std::vector<std::byte>* out);
// The same, except that on kNone `out` is left empty: the caller keeps `in`.
Codec CompressOrKeep(const CompressionSpec& spec, std::span<const std::byte> in, std::vector<std::byte>* out);

// Decompresses exactly raw_len bytes into `out`. EIO on malformed input.
Status Decompress(Codec codec, std::span<const std::byte> in, std::span<std::byte> out);

const char* CodecName(Codec codec);

}  // namespace qcfs
