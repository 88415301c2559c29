// On-device encoding of segment headers and records. Internal to the store;
// docs/design.md describes the same bytes.
//
// A segment starts with a 64-byte header; records follow, packed at byte
// granularity. Each write that makes records durable starts on a 4 KiB
// boundary, so a block holding durable records is never rewritten.
//
// A record holds one chunk, or a pack of small chunks compressed together:
//   0  u32  magic "QCCH"
//   4  u8   record format (1)
//   5  u8   codec of the payload
//   6  u8   flags: 1 = pack
//   7  u8   zero
//   8  u32  stored_len: payload bytes
//   12 u32  raw_len: payload bytes after decompression
//   16 [8]  single chunk: the first 8 bytes of its fingerprint (SHA-256);
//           pack: zero
//   24 u64  xxh3-64 of bytes [0, 24), the member table and the payload
//   32      pack only: u16 member count n, then n x {[8] fingerprint
//           prefix, u32 raw_len}; members lie in this order in the payload
//   ..      payload
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "qcfs/core/fingerprint.h"
#include "qcfs/store/codec.h"

namespace qcfs::internal {

inline constexpr uint32_t kRecordMagic = 0x48434351;   // "QCCH" little-endian
inline constexpr uint32_t kSegmentMagic = 0x47534351;  // "QCSG" little-endian
inline constexpr size_t kRecordHeaderSize = 32;
inline constexpr size_t kFpPrefix = 8;
inline constexpr size_t kMemberEntrySize = kFpPrefix + 4;
inline constexpr size_t kSegmentHeaderSize = 64;
inline constexpr uint8_t kRecordFlagPack = 1;
inline constexpr uint32_t kMaxPayload = (1u << 20) + 4096;  // a chunk or a pack: at most 1 MiB of content

struct RecordMember {
  uint8_t fp_prefix[kFpPrefix] = {};
  uint32_t raw_len = 0;

  bool Matches(const Fingerprint& fp) const { return std::memcmp(fp_prefix, fp.bytes.data(), kFpPrefix) == 0; }
};

// A parsed record. `payload` points into the bytes given to ParseRecord.
struct RecordView {
  Codec codec = Codec::kNone;
  bool pack = false;
  uint32_t stored_len = 0;
  uint32_t raw_len = 0;
  std::vector<RecordMember> members;  // a single chunk has one, with raw_len == raw_len
  std::span<const std::byte> payload;
  size_t total_len = 0;
};

// Length of the record header and member table, from the first bytes of a
// record (at least kRecordHeaderSize + 2). 0 when the bytes are no record.
size_t RecordPrefixLength(std::span<const std::byte> head);

// Parses a whole record and verifies its checksum. On failure returns false
// and says why ("damaged record header", "checksum mismatch").
bool ParseRecord(std::span<const std::byte> bytes, RecordView* out, std::string* why);

// ParseRecord of a plain (single-chunk) record read in two pieces: its
// kRecordHeaderSize-byte header and, apart, its payload, so that the payload
// can be read straight into the buffer that will hold the chunk. A pack
// fails ("record does not match the index"); so does a payload whose length
// the header does not give.
bool ParsePlainRecord(std::span<const std::byte> header, std::span<const std::byte> payload, RecordView* out,
                      std::string* why);

// Builds a record. Each member is (fingerprint, content); a single member
// without `pack` makes a plain record.
std::vector<std::byte> BuildRecord(Codec codec, bool pack, std::span<const std::byte> payload, uint32_t raw_len,
                                   std::span<const RecordMember> members);

struct SegmentHeader {
  uint32_t segment = 0;
  uint64_t sequence = 0;  // increases each time any segment is opened
  uint8_t uuid[16] = {};
};

void EncodeSegmentHeader(const SegmentHeader& h, std::byte* out);
bool DecodeSegmentHeader(std::span<const std::byte> in, SegmentHeader* h);

}  // namespace qcfs::internal
