#include "qcfs/store/internal/record.h"

#include <algorithm>
#include <cstring>

#include "qcfs/core/coding.h"

namespace qcfs::internal {

size_t RecordPrefixLength(std::span<const std::byte> head) {
  if (head.size() < kRecordHeaderSize) return 0;
  const auto* p = reinterpret_cast<const char*>(head.data());
  if (LoadLE32(p) != kRecordMagic) return 0;
  const bool pack = (static_cast<uint8_t>(p[6]) & kRecordFlagPack) != 0;
  if (p[4] == kRecordFormatBlocks && !pack) return kRecordHeaderSize + BlockTableLength(LoadLE32(p + 8));
  if (p[4] != kRecordFormatWhole) return 0;
  if (!pack) return kRecordHeaderSize;
  if (head.size() < kRecordHeaderSize + 2) return 0;
  uint16_t count = LoadLE16(p + kRecordHeaderSize);
  return kRecordHeaderSize + 2 + size_t{count} * kMemberEntrySize;
}

namespace {

// The fixed 32-byte header: format, codec, flags and lengths in range.
bool ParseHeader(const char* p, RecordView* v, std::string* why) {
  auto fail = [&](const char* reason) {
    *why = reason;
    return false;
  };
  const auto format = static_cast<uint8_t>(p[4]);
  if (LoadLE32(p) != kRecordMagic || (format != kRecordFormatWhole && format != kRecordFormatBlocks) || p[7] != 0) {
    return fail("damaged record header");
  }
  auto codec = static_cast<uint8_t>(p[5]);
  auto flags = static_cast<uint8_t>(p[6]);
  if (codec > static_cast<uint8_t>(Codec::kZstd) || (flags & ~kRecordFlagPack) != 0) {
    return fail("damaged record header");
  }
  if (format == kRecordFormatBlocks && (codec != static_cast<uint8_t>(Codec::kNone) || flags != 0)) {
    return fail("damaged record header");
  }
  v->format = format;
  v->codec = static_cast<Codec>(codec);
  v->pack = (flags & kRecordFlagPack) != 0;
  v->stored_len = LoadLE32(p + 8);
  v->raw_len = LoadLE32(p + 12);
  if (v->raw_len == 0 || v->raw_len > kMaxPayload || v->stored_len == 0 || v->stored_len > 2 * kMaxPayload ||
      (v->codec == Codec::kNone && v->stored_len != v->raw_len)) {
    return fail("damaged record header");
  }
  return true;
}

}  // namespace

bool ParsePlainRecord(std::span<const std::byte> prefix, uint32_t payload_offset, std::span<const std::byte> payload,
                      RecordView* out, std::string* why) {
  auto fail = [&](const char* reason) {
    *why = reason;
    return false;
  };
  if (prefix.size() < kRecordHeaderSize) return fail("record is truncated");
  const auto* p = reinterpret_cast<const char*>(prefix.data());
  RecordView v;
  if (!ParseHeader(p, &v, why)) return false;
  if (v.pack) return fail("record does not match the index");  // the index says plain
  const size_t table = v.format == kRecordFormatBlocks ? BlockTableLength(v.stored_len) : 0;
  if (prefix.size() != kRecordHeaderSize + table) return fail("record length does not match its header");
  const uint64_t end = uint64_t{payload_offset} + payload.size();
  if (v.format == kRecordFormatWhole ? payload_offset != 0 || end != v.stored_len
                                     : payload_offset % kSumBlock != 0 || end > v.stored_len ||
                                           (end % kSumBlock != 0 && end != v.stored_len)) {
    return fail("record length does not match its header");
  }
  RecordMember m;
  std::memcpy(m.fp_prefix, p + 16, kFpPrefix);
  m.raw_len = v.raw_len;
  v.members.push_back(m);
  v.total_len = kRecordHeaderSize + table + v.stored_len;
  v.payload = payload;
  v.payload_offset = payload_offset;
  const auto head = prefix.first(24);
  if (v.format == kRecordFormatWhole) {
    if (Checksum64(head, payload) != LoadLE64(p + 24)) return fail("checksum mismatch");
  } else {
    if (Checksum64(head, prefix.subspan(kRecordHeaderSize)) != LoadLE64(p + 24)) return fail("checksum mismatch");
    const char* sums = p + kRecordHeaderSize + payload_offset / kSumBlock * 8;
    for (size_t at = 0; at < payload.size(); at += kSumBlock, sums += 8) {
      if (BlockChecksum(payload, at) != LoadLE64(sums)) {
        return fail("checksum mismatch");
      }
    }
  }
  *out = std::move(v);
  return true;
}

bool ParseRecord(std::span<const std::byte> bytes, RecordView* out, std::string* why) {
  auto fail = [&](const char* reason) {
    *why = reason;
    return false;
  };
  if (bytes.size() < kRecordHeaderSize) return fail("record is truncated");
  const auto* p = reinterpret_cast<const char*>(bytes.data());
  RecordView v;
  if (!ParseHeader(p, &v, why)) return false;
  if (!v.pack) {
    const size_t prefix = kRecordHeaderSize + (v.format == kRecordFormatBlocks ? BlockTableLength(v.stored_len) : 0);
    if (bytes.size() < prefix + v.stored_len) return fail("record is truncated");
    return ParsePlainRecord(bytes.first(prefix), 0, bytes.subspan(prefix, v.stored_len), out, why);
  }
  // A pack: its member table sits between the header and the payload.
  if (bytes.size() < kRecordHeaderSize + 2) return fail("record is truncated");
  uint16_t count = LoadLE16(p + kRecordHeaderSize);
  if (count < 2) return fail("damaged pack table");
  const size_t table = 2 + size_t{count} * kMemberEntrySize;
  if (bytes.size() < kRecordHeaderSize + table) return fail("record is truncated");
  uint64_t members_len = 0;
  for (uint16_t i = 0; i < count; ++i) {
    RecordMember m;
    const char* e = p + kRecordHeaderSize + 2 + size_t{i} * kMemberEntrySize;
    std::memcpy(m.fp_prefix, e, kFpPrefix);
    m.raw_len = LoadLE32(e + kFpPrefix);
    if (m.raw_len == 0) return fail("damaged pack table");
    members_len += m.raw_len;
    v.members.push_back(m);
  }
  if (members_len != v.raw_len) return fail("damaged pack table");
  v.total_len = kRecordHeaderSize + table + v.stored_len;
  if (bytes.size() < v.total_len) return fail("record is truncated");
  v.payload = bytes.subspan(kRecordHeaderSize + table, v.stored_len);
  uint64_t sum = Checksum64(bytes.first(24), bytes.subspan(kRecordHeaderSize, table + v.stored_len));
  if (sum != LoadLE64(p + 24)) return fail("checksum mismatch");
  *out = std::move(v);
  return true;
}

std::vector<std::byte> BuildRawPrefix(std::span<const std::byte> payload, const RecordMember& member) {
  const size_t table = BlockTableLength(payload.size());
  std::vector<std::byte> out(kRecordHeaderSize + table);
  auto* p = reinterpret_cast<char*>(out.data());
  StoreLE32(p, kRecordMagic);
  p[4] = static_cast<char>(kRecordFormatBlocks);
  p[5] = static_cast<char>(Codec::kNone);
  StoreLE32(p + 8, static_cast<uint32_t>(payload.size()));
  StoreLE32(p + 12, static_cast<uint32_t>(payload.size()));
  std::memcpy(p + 16, member.fp_prefix, kFpPrefix);
  for (size_t at = 0; at < payload.size(); at += kSumBlock) {
    StoreLE64(p + kRecordHeaderSize + at / kSumBlock * 8, BlockChecksum(payload, at));
  }
  const std::span<const std::byte> all(out);
  StoreLE64(p + 24, Checksum64(all.first(24), all.subspan(kRecordHeaderSize)));
  return out;
}

std::vector<std::byte> BuildRecord(Codec codec, bool pack, std::span<const std::byte> payload, uint32_t raw_len,
                                   std::span<const RecordMember> members, std::optional<uint8_t> format) {
  const uint8_t f = format.value_or(RecordFormatFor(codec, pack));
  if (f == kRecordFormatBlocks) {
    std::vector<std::byte> out = BuildRawPrefix(payload, members[0]);
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
  }
  const size_t table = pack ? 2 + members.size() * kMemberEntrySize : 0;
  std::vector<std::byte> out;
  out.reserve(kRecordHeaderSize + table + payload.size());
  out.resize(kRecordHeaderSize + table);
  out.insert(out.end(), payload.begin(), payload.end());
  auto* p = reinterpret_cast<char*>(out.data());
  StoreLE32(p, kRecordMagic);
  p[4] = static_cast<char>(f);
  p[5] = static_cast<char>(codec);
  p[6] = static_cast<char>(pack ? kRecordFlagPack : 0);
  p[7] = 0;
  StoreLE32(p + 8, static_cast<uint32_t>(payload.size()));
  StoreLE32(p + 12, raw_len);
  if (!pack) std::memcpy(p + 16, members[0].fp_prefix, kFpPrefix);
  if (pack) {
    StoreLE16(p + kRecordHeaderSize, static_cast<uint16_t>(members.size()));
    for (size_t i = 0; i < members.size(); ++i) {
      char* e = p + kRecordHeaderSize + 2 + i * kMemberEntrySize;
      std::memcpy(e, members[i].fp_prefix, kFpPrefix);
      StoreLE32(e + kFpPrefix, members[i].raw_len);
    }
  }
  const std::span<const std::byte> all(out);
  StoreLE64(p + 24, Checksum64(all.first(24), all.subspan(kRecordHeaderSize)));
  return out;
}

void EncodeSegmentHeader(const SegmentHeader& h, std::byte* out) {
  auto* p = reinterpret_cast<char*>(out);
  std::memset(p, 0, kSegmentHeaderSize);
  StoreLE32(p, kSegmentMagic);
  StoreLE32(p + 4, 1);
  StoreLE32(p + 8, h.segment);
  StoreLE64(p + 16, h.sequence);
  std::memcpy(p + 24, h.uuid, 16);
  StoreLE64(p + 56, Checksum64(std::span<const std::byte>(out, 56)));
}

bool DecodeSegmentHeader(std::span<const std::byte> in, SegmentHeader* h) {
  if (in.size() < kSegmentHeaderSize) return false;
  const auto* p = reinterpret_cast<const char*>(in.data());
  if (LoadLE32(p) != kSegmentMagic || LoadLE32(p + 4) != 1) return false;
  if (LoadLE64(p + 56) != Checksum64(in.first(56))) return false;
  h->segment = LoadLE32(p + 8);
  h->sequence = LoadLE64(p + 16);
  std::memcpy(h->uuid, p + 24, 16);
  return true;
}

}  // namespace qcfs::internal
