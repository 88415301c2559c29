#include "qcfs/core/fingerprint.h"

#include <openssl/sha.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

namespace qcfs {

Fingerprint Fingerprint::Of(std::span<const std::byte> data) {
  Fingerprint f;
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), f.bytes.data());
  return f;
}

std::string Fingerprint::Hex() const {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(kSize * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

uint64_t Checksum64(std::span<const std::byte> data) { return XXH3_64bits(data.data(), data.size()); }

uint64_t Checksum64(std::span<const std::byte> a, std::span<const std::byte> b) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, a.data(), a.size());
  XXH3_64bits_update(&state, b.data(), b.size());
  return XXH3_64bits_digest(&state);
}

}  // namespace qcfs
