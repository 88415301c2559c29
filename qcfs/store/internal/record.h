// On-device encoding of segment headers and chunk records. Internal to the
// store; docs/design.md describes the same bytes.
//
// A segment starts with a 64-byte header; chunk records follow, packed at
// byte granularity. Each write that makes records durable starts on a 4 KiB
// boundary, so a block holding durable records is never rewritten.
//
// Chunk record: 56-byte header, then stored_len payload bytes.
//   0  u32  magic "QCCH"
//   4  u8   record format (1)
//   5  u8   codec
//   6  u16  header length (56)
//   8  u32  stored_len: payload bytes
//   12 u32  raw_len: content bytes after decompression
//   16 [32] fingerprint (SHA-256 of the content)
//   48 u64  xxh3-64 of header bytes [0, 48) and the payload
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "qcfs/core/fingerprint.h"
#include "qcfs/store/codec.h"

namespace qcfs::internal {

inline constexpr uint32_t kRecordMagic = 0x48434351;   // "QCCH" little-endian
inline constexpr uint32_t kSegmentMagic = 0x47534351;  // "QCSG" little-endian
inline constexpr size_t kRecordHeaderSize = 56;
inline constexpr size_t kSegmentHeaderSize = 64;

struct RecordHeader {
  Codec codec = Codec::kNone;
  uint32_t stored_len = 0;
  uint32_t raw_len = 0;
  Fingerprint fp;
  uint64_t checksum = 0;
};

// Writes the header for `payload` into out[0, kRecordHeaderSize).
void EncodeRecordHeader(const RecordHeader& h, std::span<const std::byte> payload, std::byte* out);

// Parses and validates a header (magic, sizes). Does not check the payload.
bool DecodeRecordHeader(std::span<const std::byte> in, RecordHeader* h);

// True when the checksum in `h` matches header bytes and payload.
bool RecordChecksumMatches(std::span<const std::byte> header_bytes, std::span<const std::byte> payload,
                           uint64_t checksum);

struct SegmentHeader {
  uint32_t segment = 0;
  uint64_t sequence = 0;  // increases each time any segment is opened
  std::array<uint8_t, 16> uuid{};
};

void EncodeSegmentHeader(const SegmentHeader& h, std::byte* out);
bool DecodeSegmentHeader(std::span<const std::byte> in, SegmentHeader* h);

}  // namespace qcfs::internal
