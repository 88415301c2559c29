#include "qcfs/store/internal/record.h"

#include <cstring>

#include "qcfs/core/coding.h"

namespace qcfs::internal {

void EncodeRecordHeader(const RecordHeader& h, std::span<const std::byte> payload, std::byte* out) {
  auto* p = reinterpret_cast<char*>(out);
  StoreLE32(p, kRecordMagic);
  p[4] = 1;
  p[5] = static_cast<char>(h.codec);
  StoreLE16(p + 6, kRecordHeaderSize);
  StoreLE32(p + 8, h.stored_len);
  StoreLE32(p + 12, h.raw_len);
  std::memcpy(p + 16, h.fp.bytes.data(), Fingerprint::kSize);
  uint64_t sum = Checksum64(std::span<const std::byte>(out, 48), payload);
  StoreLE64(p + 48, sum);
}

bool DecodeRecordHeader(std::span<const std::byte> in, RecordHeader* h) {
  if (in.size() < kRecordHeaderSize) return false;
  const auto* p = reinterpret_cast<const char*>(in.data());
  if (LoadLE32(p) != kRecordMagic || p[4] != 1 || LoadLE16(p + 6) != kRecordHeaderSize) return false;
  auto codec = static_cast<uint8_t>(p[5]);
  if (codec > static_cast<uint8_t>(Codec::kZstd)) return false;
  h->codec = static_cast<Codec>(codec);
  h->stored_len = LoadLE32(p + 8);
  h->raw_len = LoadLE32(p + 12);
  if (h->raw_len == 0 || h->raw_len > (1u << 20) || h->stored_len == 0 || h->stored_len > (1u << 21)) return false;
  if (h->codec == Codec::kNone && h->stored_len != h->raw_len) return false;
  h->fp = Fingerprint::FromBytes(std::string_view(p + 16, Fingerprint::kSize));
  h->checksum = LoadLE64(p + 48);
  return true;
}

bool RecordChecksumMatches(std::span<const std::byte> header_bytes, std::span<const std::byte> payload,
                           uint64_t checksum) {
  if (header_bytes.size() < 48) return false;
  return Checksum64(header_bytes.first(48), payload) == checksum;
}

void EncodeSegmentHeader(const SegmentHeader& h, std::byte* out) {
  auto* p = reinterpret_cast<char*>(out);
  std::memset(p, 0, kSegmentHeaderSize);
  StoreLE32(p, kSegmentMagic);
  StoreLE32(p + 4, 1);
  StoreLE32(p + 8, h.segment);
  StoreLE64(p + 16, h.sequence);
  std::memcpy(p + 24, h.uuid.data(), 16);
  StoreLE64(p + 56, Checksum64(std::span<const std::byte>(out, 56)));
}

bool DecodeSegmentHeader(std::span<const std::byte> in, SegmentHeader* h) {
  if (in.size() < kSegmentHeaderSize) return false;
  const auto* p = reinterpret_cast<const char*>(in.data());
  if (LoadLE32(p) != kSegmentMagic || LoadLE32(p + 4) != 1) return false;
  if (LoadLE64(p + 56) != Checksum64(in.first(56))) return false;
  h->segment = LoadLE32(p + 8);
  h->sequence = LoadLE64(p + 16);
  std::memcpy(h->uuid.data(), p + 24, 16);
  return true;
}

}  // namespace qcfs::internal
