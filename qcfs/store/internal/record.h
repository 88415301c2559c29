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
//
// That is record format 1. A single chunk stored raw (codec none) is written
// in format 2, so that a read of a few 4 KiB blocks of it verifies just
// those: between the header and the payload lies a table of xxh3-64 sums,
// one per 4 KiB block of the payload (the last block may be short), and the
// header's checksum covers bytes [0, 24) and the table instead of the
// payload. Format-1 raw records written before format 2 are still read.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
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
inline constexpr uint8_t kRecordFormatWhole = 1;   // one checksum over the table and payload
inline constexpr uint8_t kRecordFormatBlocks = 2;  // raw single chunk with a checksum per block
inline constexpr size_t kSumBlock = 4096;          // format 2: bytes of payload per checksum

// Format 2: bytes of the block checksum table for a payload of `stored_len`.
inline size_t BlockTableLength(uint64_t stored_len) { return 8 * ((stored_len + kSumBlock - 1) / kSumBlock); }
// Format 2: the checksum of the block of `payload` starting at `at` (a
// multiple of kSumBlock below payload.size(); the last block may be short).
inline uint64_t BlockChecksum(std::span<const std::byte> payload, size_t at) {
  return Checksum64(payload.subspan(at, std::min(kSumBlock, payload.size() - at)));
}
// The format BuildRecord writes for a record of this kind.
inline uint8_t RecordFormatFor(Codec codec, bool pack) {
  return codec == Codec::kNone && !pack ? kRecordFormatBlocks : kRecordFormatWhole;
}

struct RecordMember {
  uint8_t fp_prefix[kFpPrefix] = {};
  uint32_t raw_len = 0;

  bool Matches(const Fingerprint& fp) const { return std::memcmp(fp_prefix, fp.bytes.data(), kFpPrefix) == 0; }
};

// A parsed record. `payload` points into the bytes given to ParseRecord.
struct RecordView {
  uint8_t format = kRecordFormatWhole;
  Codec codec = Codec::kNone;
  bool pack = false;
  uint32_t stored_len = 0;
  uint32_t raw_len = 0;
  std::vector<RecordMember> members;  // a single chunk has one, with raw_len == raw_len
  std::span<const std::byte> payload;  // stored bytes [payload_offset, payload_offset + payload.size())
  uint32_t payload_offset = 0;         // non-zero only for a part of a format-2 payload
  size_t total_len = 0;
};

// Length of the record header and member table or block table, from the
// first bytes of a record (at least kRecordHeaderSize + 2). 0 when the bytes
// are no record.
size_t RecordPrefixLength(std::span<const std::byte> head);

// Parses a whole record and verifies its checksum. On failure returns false
// and says why ("damaged record header", "checksum mismatch").
bool ParseRecord(std::span<const std::byte> bytes, RecordView* out, std::string* why);

// ParseRecord of a plain (single-chunk) record read in two pieces: its
// prefix (the header, and in format 2 the block table) and, apart, its
// payload, so that the payload can be read straight into the buffer that
// will hold the chunk. In format 2 the payload may be a part: the stored
// bytes from `payload_offset` (a multiple of kSumBlock) up to a block
// boundary or the end; only those blocks are verified. A pack fails ("record
// does not match the index"); so do a prefix or payload whose length the
// header does not give.
bool ParsePlainRecord(std::span<const std::byte> prefix, uint32_t payload_offset, std::span<const std::byte> payload,
                      RecordView* out, std::string* why);

// The prefix of a format-2 record holding `payload` raw: its header and
// block table, to be followed by the payload itself.
std::vector<std::byte> BuildRawPrefix(std::span<const std::byte> payload, const RecordMember& member);

// Builds a record. Each member is (fingerprint, content); a single member
// without `pack` makes a plain record. `format` is RecordFormatFor(codec,
// pack) unless given (REQUIRES: format 2 only for a raw single chunk).
std::vector<std::byte> BuildRecord(Codec codec, bool pack, std::span<const std::byte> payload, uint32_t raw_len,
                                   std::span<const RecordMember> members, std::optional<uint8_t> format = {});

struct SegmentHeader {
  uint32_t segment = 0;
  uint64_t sequence = 0;  // increases each time any segment is opened
  uint8_t uuid[16] = {};
};

void EncodeSegmentHeader(const SegmentHeader& h, std::byte* out);
bool DecodeSegmentHeader(std::span<const std::byte> in, SegmentHeader* h);

}  // namespace qcfs::internal
