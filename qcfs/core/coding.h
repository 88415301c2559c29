// Byte encoding for on-disk and in-RocksDB records.
//
// Keys use big-endian fixed-width integers so that RocksDB's bytewise order
// is numeric order. Values use little-endian fixed-width integers and
// varints. Decoder never reads past its input: every getter returns false on
// truncated or malformed input, so decoders of on-disk bytes can be fuzzed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace qcfs {

inline void PutBig64(std::string* out, uint64_t v) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(buf, 8);
}

inline void PutBig32(std::string* out, uint32_t v) {
  char buf[4];
  for (int i = 3; i >= 0; --i) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(buf, 4);
}

inline uint64_t GetBig64(const void* p) {
  const auto* b = static_cast<const unsigned char*>(p);
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | b[i];
  return v;
}

inline uint32_t GetBig32(const void* p) {
  const auto* b = static_cast<const unsigned char*>(p);
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | b[i];
  return v;
}

inline void StoreLE64(void* p, uint64_t v) { std::memcpy(p, &v, 8); }  // x86-64 and arm64 are LE
inline void StoreLE32(void* p, uint32_t v) { std::memcpy(p, &v, 4); }
inline void StoreLE16(void* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline uint64_t LoadLE64(const void* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }
inline uint32_t LoadLE32(const void* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline uint16_t LoadLE16(const void* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }

// Appends values to a string.
class Encoder {
 public:
  explicit Encoder(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void Fixed32(uint32_t v) { char b[4]; StoreLE32(b, v); out_->append(b, 4); }
  void Fixed64(uint64_t v) { char b[8]; StoreLE64(b, v); out_->append(b, 8); }
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_->push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_->push_back(static_cast<char>(v));
  }
  void SignedVarint(int64_t v) { Varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void Bytes(std::string_view b) { out_->append(b); }
  // Length-prefixed bytes.
  void String(std::string_view s) { Varint(s.size()); out_->append(s); }

 private:
  std::string* out_;
};

// Reads values from a byte range; every getter fails cleanly on short input.
class Decoder {
 public:
  explicit Decoder(std::string_view in) : in_(in) {}
  bool U8(uint8_t* v) {
    if (in_.empty()) return false;
    *v = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool Fixed32(uint32_t* v) {
    if (in_.size() < 4) return false;
    *v = LoadLE32(in_.data());
    in_.remove_prefix(4);
    return true;
  }
  bool Fixed64(uint64_t* v) {
    if (in_.size() < 8) return false;
    *v = LoadLE64(in_.data());
    in_.remove_prefix(8);
    return true;
  }
  bool Varint(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift <= 63; shift += 7) {
      if (in_.empty()) return false;
      auto byte = static_cast<uint8_t>(in_[0]);
      in_.remove_prefix(1);
      result |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  template <typename T>
  bool VarintAs(T* v) {
    uint64_t x;
    if (!Varint(&x)) return false;
    *v = static_cast<T>(x);
    return static_cast<uint64_t>(*v) == x;
  }
  bool SignedVarint(int64_t* v) {
    uint64_t x;
    if (!Varint(&x)) return false;
    *v = static_cast<int64_t>((x >> 1) ^ (~(x & 1) + 1));
    return true;
  }
  bool Bytes(size_t n, std::string_view* out) {
    if (in_.size() < n) return false;
    *out = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  bool String(std::string_view* out) {
    uint64_t n;
    if (!Varint(&n) || n > in_.size()) return false;
    return Bytes(static_cast<size_t>(n), out);
  }
  bool done() const { return in_.empty(); }
  size_t remaining() const { return in_.size(); }

 private:
  std::string_view in_;
};

inline std::string_view AsStringView(std::span<const std::byte> s) {
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}
inline std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace qcfs
