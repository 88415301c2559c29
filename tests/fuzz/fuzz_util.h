// Helpers shared by the fuzz targets and the seed generator (make_seeds.cc):
// a reader over the fuzzer's bytes, checks that abort with a message, and
// the input formats of the structure-aware targets, which fix up checksums
// themselves so that the fuzzer reaches the code behind them.
#pragma once

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "qcfs/core/coding.h"
#include "qcfs/core/fingerprint.h"
#include "qcfs/meta/metafs.h"
#include "qcfs/store/internal/record.h"

// An invariant the code promises does not hold: report it as a crash.
#define QCFS_FUZZ_CHECK(cond, what)                                                      \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s (%s)\n", __FILE__, __LINE__, what, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace qcfs::fuzz {

// Reads values off the front of the input; past its end, zeros.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return rest_.empty(); }
  size_t remaining() const { return rest_.size(); }
  uint8_t U8() { return static_cast<uint8_t>(Fixed(1)); }
  uint16_t U16() { return static_cast<uint16_t>(Fixed(2)); }
  uint32_t U32() { return static_cast<uint32_t>(Fixed(4)); }
  uint64_t U64() { return Fixed(8); }
  // Up to n bytes.
  std::string_view Bytes(size_t n) {
    std::string_view out = rest_.substr(0, n);
    rest_.remove_prefix(out.size());
    return out;
  }
  std::string_view Rest() { return Bytes(rest_.size()); }

 private:
  uint64_t Fixed(size_t n) {
    uint64_t v = 0;
    std::memcpy(&v, rest_.data(), std::min(n, rest_.size()));  // little-endian hosts only, as the format
    rest_.remove_prefix(std::min(n, rest_.size()));
    return v;
  }
  std::string_view rest_;
};

inline std::span<const std::byte> Span(std::string_view s) { return AsBytes(s); }

// ---------------------------------------------------------------- records

// Writes the checksums a record's header promises (bytes 24..32, and a
// format-2 record's block sums) when the bytes hold a whole record as its
// header describes it.
inline void FixRecordChecksum(std::string* r) {
  using namespace internal;
  if (r->size() < kRecordHeaderSize) return;
  const char* p = r->data();
  const size_t stored = LoadLE32(p + 8);
  size_t table = 0;
  if (static_cast<uint8_t>(p[6]) & kRecordFlagPack) {
    if (r->size() < kRecordHeaderSize + 2) return;
    table = 2 + size_t{LoadLE16(p + kRecordHeaderSize)} * kMemberEntrySize;
  } else if (p[4] == kRecordFormatBlocks) {
    table = BlockTableLength(stored);
  }
  size_t end = kRecordHeaderSize + table + stored;
  if (end > r->size()) return;
  auto all = Span(*r);
  if (p[4] == kRecordFormatBlocks && !(static_cast<uint8_t>(p[6]) & kRecordFlagPack)) {
    auto payload = all.subspan(kRecordHeaderSize + table, stored);
    for (size_t at = 0; at < stored; at += kSumBlock) {
      StoreLE64(r->data() + kRecordHeaderSize + at / kSumBlock * 8, BlockChecksum(payload, at));
    }
    StoreLE64(r->data() + 24, Checksum64(all.first(24), all.subspan(kRecordHeaderSize, table)));
    return;
  }
  StoreLE64(r->data() + 24, Checksum64(all.first(24), all.subspan(kRecordHeaderSize, end - kRecordHeaderSize)));
}

inline void FixSegmentHeaderChecksum(std::string* h) {
  if (h->size() < internal::kSegmentHeaderSize) return;
  StoreLE64(h->data() + 56, Checksum64(Span(*h).first(56)));
}

// ---------------------------------------------------------------- MetaFs
//
// metafs_fuzzer's input:
//   u8  flags (kMetaRaw..., and the root's synced record count in bits 5-7)
//   u64 root generation, u64 journal offset, u64 journal length
//   then, raw: the bytes written at the journal offset;
//   otherwise records, each u8 type, u16 length, payload: written framed
//   and checksummed as the journal's (type | 0x80: one generation later).
//   Type 0xff ends an extent: what follows is written where the last
//   "continue at" record (type 7) points.

inline constexpr uint8_t kMetaRaw = 1;          // the journal bytes as given
inline constexpr uint8_t kMetaReadOnly = 2;     // MountReadOnly instead of Mount
inline constexpr uint8_t kMetaBadRoot = 4;      // damage the root's checksum
inline constexpr uint8_t kMetaOtherVolume = 8;  // the root names another volume
inline constexpr uint8_t kMetaRollBack = 16;    // mount with Damage::kRollBack
// flags >> 5: the records the root says a sync covered (a journal shorter
// than that is damage: refused, or rolled back).
inline constexpr uint8_t kMetaNextExtent = 0xff;
inline constexpr uint8_t kMetaLater = 0x80;

inline MetaFsLayout FuzzLayout() {
  MetaFsLayout l;
  l.data_offset = 16 << 10;
  l.segment_size = 16 << 10;  // small: a journal continues in a second extent after 16 KiB
  l.segment_count = 16;
  l.uuid = {0x51, 0x43, 0x46, 0x53, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x6d, 0x65, 0x74, 0x61, 0x66, 0x73};
  return l;
}
inline uint64_t DeviceSize(const MetaFsLayout& l) { return l.data_offset + l.segment_count * l.segment_size; }

// The record framing of metafs.cc: u32 length, u8 type, u64 generation,
// payload, u64 xxh3 seeded with the volume's UUID.
inline std::string EncodeJournalRecord(uint8_t type, uint64_t generation, std::string_view payload,
                                       const std::array<uint8_t, 16>& uuid) {
  std::string r(13, '\0');
  StoreLE32(r.data(), static_cast<uint32_t>(payload.size()));
  r[4] = static_cast<char>(type);
  StoreLE64(r.data() + 5, generation);
  r.append(payload);
  char sum[8];
  StoreLE64(sum, XXH3_64bits_withSeed(r.data(), r.size(), LoadLE64(uuid.data())));
  r.append(sum, 8);
  return r;
}

// A root block: magic, generation, the journal's first extent, UUID, the
// records a sync covered, the root's sequence, xxh3 of all that.
inline std::string EncodeRoot(uint64_t generation, uint64_t offset, uint64_t length,
                              const std::array<uint8_t, 16>& uuid, uint64_t synced_records, uint64_t sequence) {
  std::string b(4096, '\0');
  std::memcpy(b.data(), "QCFSMETA", 8);
  StoreLE64(b.data() + 8, generation);
  StoreLE64(b.data() + 16, offset);
  StoreLE64(b.data() + 24, length);
  std::memcpy(b.data() + 32, uuid.data(), 16);
  StoreLE64(b.data() + 48, synced_records);
  StoreLE64(b.data() + 56, sequence);
  StoreLE64(b.data() + 64, XXH3_64bits(b.data(), 64));
  return b;
}

}  // namespace qcfs::fuzz
