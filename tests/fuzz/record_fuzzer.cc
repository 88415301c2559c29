// The chunk store's record and segment header decoders on any bytes:
// RecordPrefixLength, ParseRecord (header, pack member table, block sums,
// checksum), ParsePlainRecord of each block of a raw record on its own,
// decompression of the payload it hands out, and DecodeSegmentHeader.
//
// Input: u8 flags, then the bytes. Flag 1 makes the record's checksum
// right and flag 2 the segment header's, so that the fuzzer gets past them.
#include <string>
#include <vector>

#include "qcfs/store/codec.h"
#include "qcfs/store/internal/record.h"
#include "tests/fuzz/fuzz_util.h"

namespace qcfs {
namespace {

using namespace internal;

constexpr uint8_t kFixRecord = 1;
constexpr uint8_t kFixSegmentHeader = 2;

void CheckRecord(const std::string& bytes) {
  auto all = fuzz::Span(bytes);
  RecordView v;
  std::string why;
  if (!ParseRecord(all, &v, &why)) {
    QCFS_FUZZ_CHECK(!why.empty(), "ParseRecord fails without saying why");
    return;
  }
  // What the record says about itself holds.
  QCFS_FUZZ_CHECK(v.total_len <= bytes.size(), "a parsed record is longer than its bytes");
  QCFS_FUZZ_CHECK(v.payload.data() >= all.data() && v.payload.data() + v.payload.size() <= all.data() + v.total_len,
                  "a record's payload lies outside it");
  QCFS_FUZZ_CHECK(v.payload.size() == v.stored_len, "payload length differs from stored_len");
  QCFS_FUZZ_CHECK(v.raw_len > 0 && v.raw_len <= kMaxPayload, "raw_len out of range");
  QCFS_FUZZ_CHECK(!v.members.empty() && (v.pack ? v.members.size() >= 2 : v.members.size() == 1),
                  "member table of the wrong size");
  uint64_t sum = 0;
  for (const RecordMember& m : v.members) sum += m.raw_len;
  QCFS_FUZZ_CHECK(sum == v.raw_len, "member lengths do not add up to raw_len");
  size_t table = v.pack ? 2 + v.members.size() * kMemberEntrySize : 0;
  if (v.format == kRecordFormatBlocks) table = BlockTableLength(v.stored_len);
  QCFS_FUZZ_CHECK(RecordPrefixLength(all) == kRecordHeaderSize + table,
                  "RecordPrefixLength disagrees with ParseRecord");

  // Building the record again from what was parsed gives the same bytes
  // (a pack's fingerprint field is not covered: only zero is written there).
  std::vector<std::byte> built = BuildRecord(v.codec, v.pack, v.payload, v.raw_len, v.members, v.format);
  std::string expect = bytes.substr(0, v.total_len);
  if (v.pack) {
    std::memset(expect.data() + 16, 0, kFpPrefix);
    StoreLE64(expect.data() + 24, LoadLE64(built.data() + 24));
  }
  QCFS_FUZZ_CHECK(AsStringView(built) == expect, "BuildRecord of a parsed record differs from it");

  // Each block of a raw record verifies on its own, as a ranged read does.
  if (v.format == kRecordFormatBlocks) {
    const size_t prefix = kRecordHeaderSize + table;
    for (size_t at = 0; at < v.stored_len; at += kSumBlock) {
      RecordView part;
      QCFS_FUZZ_CHECK(ParsePlainRecord(all.first(prefix), static_cast<uint32_t>(at),
                                       v.payload.subspan(at, std::min<size_t>(kSumBlock, v.stored_len - at)), &part,
                                       &why),
                      "a block of a parsed record does not parse on its own");
    }
  }

  // Decompression yields exactly raw_len bytes or fails cleanly.
  std::vector<std::byte> raw(v.raw_len);
  Status s = Decompress(v.codec, v.payload, raw);
  if (!s.ok()) QCFS_FUZZ_CHECK(s.code() == EIO, "decompression fails with something other than EIO");
}

void CheckSegmentHeader(const std::string& bytes) {
  SegmentHeader h;
  if (!DecodeSegmentHeader(fuzz::Span(bytes), &h)) return;
  std::byte again[kSegmentHeaderSize];
  EncodeSegmentHeader(h, again);
  SegmentHeader h2;
  QCFS_FUZZ_CHECK(DecodeSegmentHeader(std::span<const std::byte>(again), &h2), "an encoded segment header does not decode");
  QCFS_FUZZ_CHECK(h2.segment == h.segment && h2.sequence == h.sequence && std::memcmp(h2.uuid, h.uuid, 16) == 0,
                  "Encode then Decode changes a segment header");
}

}  // namespace
}  // namespace qcfs

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcfs;
  fuzz::Input in(data, size);
  uint8_t flags = in.U8();
  std::string bytes(in.Rest());

  internal::RecordPrefixLength(fuzz::Span(bytes));
  std::string record = bytes;
  if (flags & kFixRecord) fuzz::FixRecordChecksum(&record);
  CheckRecord(record);

  std::string header = bytes;
  if (flags & kFixSegmentHeader) fuzz::FixSegmentHeaderChecksum(&header);
  CheckSegmentHeader(header);
  return 0;
}
