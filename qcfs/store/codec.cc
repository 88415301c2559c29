#include "qcfs/store/codec.h"

#include <lz4.h>
#include <zstd.h>

#include <charconv>
#include <cstring>
#include <memory>

namespace qcfs {

const char* CodecName(Codec codec) {
  switch (codec) {
    case Codec::kNone: return "none";
    case Codec::kLz4: return "lz4";
    case Codec::kZstd: return "zstd";
  }
  return "unknown";
}

std::string CompressionSpec::ToString() const {
  if (codec == Codec::kZstd) return fmt::format("zstd:{}", level == 0 ? 3 : level);
  return CodecName(codec);
}

Result<CompressionSpec> CompressionSpec::Parse(std::string_view text) {
  CompressionSpec spec;
  if (text == "lz4") {
    spec.codec = Codec::kLz4;
  } else if (text == "none" || text == "off") {
    spec.codec = Codec::kNone;
  } else if (text == "zstd") {
    spec.codec = Codec::kZstd;
    spec.level = 3;
  } else if (text.starts_with("zstd:")) {
    std::string_view lv = text.substr(5);
    int level = 0;
    auto [p, ec] = std::from_chars(lv.data(), lv.data() + lv.size(), level);
    if (ec != std::errc() || p != lv.data() + lv.size() || level < 1 || level > 19) {
      return Status::Errorf(EINVAL, "invalid compression '{}': zstd level must be 1..19", text);
    }
    spec.codec = Codec::kZstd;
    spec.level = level;
  } else {
    return Status::Errorf(EINVAL, "invalid compression '{}': use lz4, zstd[:LEVEL] or none", text);
  }
  return spec;
}

namespace {

// Output space for one compression, reused by the thread: sized once, never
// zero-filled again.
std::span<std::byte> Scratch(size_t size) {
  thread_local std::unique_ptr<std::byte[]> buf;
  thread_local size_t have = 0;
  if (have < size) {
    buf = std::make_unique_for_overwrite<std::byte[]>(size);
    have = size;
  }
  return {buf.get(), size};
}

// Whether `in` is worth compressing: LZ4 on a 4 KiB sample from its middle.
// Random and already compressed data (most of what does not compress) is
// that way throughout, and skipping it saves the whole attempt; a sample
// that shrinks by an eighth or more says try.
bool LooksCompressible(std::span<const std::byte> in) {
  constexpr size_t kSample = 4096;
  if (in.size() < 4 * kSample) return true;
  const std::byte* start = in.data() + (in.size() / 2 & ~(kSample - 1));
  std::span<std::byte> out = Scratch(static_cast<size_t>(LZ4_compressBound(kSample)));
  int n = LZ4_compress_default(reinterpret_cast<const char*>(start), reinterpret_cast<char*>(out.data()), kSample,
                               static_cast<int>(out.size()));
  return n > 0 && static_cast<size_t>(n) < kSample - kSample / 8;
}

}  // namespace

Codec Compress(const CompressionSpec& spec, std::span<const std::byte> in, std::vector<std::byte>* out) {
  Codec used = CompressOrKeep(spec, in, out);
  if (used == Codec::kNone) out->assign(in.begin(), in.end());
  return used;
}

Codec CompressOrKeep(const CompressionSpec& spec, std::span<const std::byte> in, std::vector<std::byte>* out) {
  out->clear();
  const size_t worthwhile = in.size() - in.size() / 32;
  if (spec.codec != Codec::kNone && LooksCompressible(in)) {
    if (spec.codec == Codec::kLz4) {
      std::span<std::byte> buf = Scratch(static_cast<size_t>(LZ4_compressBound(static_cast<int>(in.size()))));
      int n = LZ4_compress_default(reinterpret_cast<const char*>(in.data()), reinterpret_cast<char*>(buf.data()),
                                   static_cast<int>(in.size()), static_cast<int>(buf.size()));
      if (n > 0 && static_cast<size_t>(n) < worthwhile) {
        out->assign(buf.begin(), buf.begin() + n);
        return Codec::kLz4;
      }
    } else if (spec.codec == Codec::kZstd) {
      thread_local std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
      std::span<std::byte> buf = Scratch(ZSTD_compressBound(in.size()));
      size_t n = ZSTD_compressCCtx(cctx.get(), buf.data(), buf.size(), in.data(), in.size(),
                                   spec.level == 0 ? 3 : spec.level);
      if (!ZSTD_isError(n) && n < worthwhile) {
        out->assign(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
        return Codec::kZstd;
      }
    }
  }
  return Codec::kNone;
}

Status Decompress(Codec codec, std::span<const std::byte> in, std::span<std::byte> out) {
  switch (codec) {
    case Codec::kNone:
      if (in.size() != out.size()) return Status::Errorf(EIO, "raw chunk holds {} bytes, expected {}", in.size(), out.size());
      std::memcpy(out.data(), in.data(), in.size());
      return Status::Ok();
    case Codec::kLz4: {
      int n = LZ4_decompress_safe(reinterpret_cast<const char*>(in.data()), reinterpret_cast<char*>(out.data()),
                                  static_cast<int>(in.size()), static_cast<int>(out.size()));
      if (n < 0 || static_cast<size_t>(n) != out.size()) {
        return Status::Errorf(EIO, "lz4 payload of {} bytes does not decompress to {} bytes", in.size(), out.size());
      }
      return Status::Ok();
    }
    case Codec::kZstd: {
      thread_local std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
      size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), in.data(), in.size());
      if (ZSTD_isError(n) || n != out.size()) {
        return Status::Errorf(EIO, "zstd payload of {} bytes does not decompress to {} bytes", in.size(), out.size());
      }
      return Status::Ok();
    }
  }
  return Status::Errorf(EIO, "unknown codec {}", static_cast<int>(codec));
}

}  // namespace qcfs
