// Fingerprint: the identity of a chunk's content (SHA-256 of its bytes).
//
// SHA-256 cannot collide by accident, so a dedup hit needs no byte
// comparison; OpenSSL uses the CPU's SHA instructions where it has them.
// Checksum64 is the cheap xxh3 checksum that guards stored bytes on every read.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace qcfs {

struct Fingerprint {
  static constexpr size_t kSize = 32;
  std::array<uint8_t, kSize> bytes{};

  static Fingerprint Of(std::span<const std::byte> data);
  // REQUIRES: raw.size() == kSize.
  static Fingerprint FromBytes(std::string_view raw) {
    Fingerprint f;
    std::memcpy(f.bytes.data(), raw.data(), kSize);
    return f;
  }
  std::string_view AsStringView() const { return {reinterpret_cast<const char*>(bytes.data()), kSize}; }
  // Full lowercase hex.
  std::string Hex() const;
  // The first 12 hex digits, for messages.
  std::string ShortHex() const { return Hex().substr(0, 12); }

  friend bool operator==(const Fingerprint&, const Fingerprint&) = default;
  friend auto operator<=>(const Fingerprint&, const Fingerprint&) = default;
};

struct FingerprintHash {
  size_t operator()(const Fingerprint& f) const {
    size_t h;
    std::memcpy(&h, f.bytes.data(), sizeof h);  // already uniformly distributed
    return h;
  }
};

uint64_t Checksum64(std::span<const std::byte> data);
uint64_t Checksum64(std::span<const std::byte> a, std::span<const std::byte> b);

}  // namespace qcfs
