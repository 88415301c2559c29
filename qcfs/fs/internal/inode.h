// In-memory state of an inode that is open, has buffered data, or is being
// flushed. Internal to the fs layer.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <unordered_map>
#include <vector>

#include "qcfs/core/uninit_bytes.h"
#include "qcfs/core/status.h"
#include "qcfs/meta/schema.h"
#include "qcfs/store/chunk_store.h"

namespace qcfs::internal {

// One chunk of file data in memory, chunk_size bytes; bytes past the end of
// the file are zero. Only the bytes below end() are held: the rest are zero
// without having been written, so that a new small file's buffer is not
// zeroed whole (and its untouched pages never faulted in). Callers hold the
// inode's stripe lock to change a buffer; one in flight is never changed.
class ChunkBuf {
 public:
  explicit ChunkBuf(size_t size) : data_(size) {}  // all zero: nothing held
  ChunkBuf(const ChunkBuf&) = delete;
  ChunkBuf& operator=(const ChunkBuf&) = delete;

  size_t size() const { return data_.size(); }
  // Bytes from here on are zero.
  size_t end() const { return end_; }
  // The bytes below end().
  std::span<const std::byte> held() const { return std::span<const std::byte>(data_).first(end_); }
  // Copies bytes [offset, offset + out.size()) out, zeros past end() included.
  // REQUIRES: offset + out.size() <= size().
  void CopyOut(size_t offset, std::span<std::byte> out) const;
  // Writes `in` at `offset`; a gap after end() becomes zeros.
  // REQUIRES: offset + in.size() <= size().
  void Write(size_t offset, std::span<const std::byte> in);
  // Makes bytes [from, to) zero. REQUIRES: from <= to <= size().
  void Zero(size_t from, size_t to);

  uint64_t seq = 0;  // write sequence number when the buffer was created

 private:
  UninitBytes data_;  // size() bytes; those from end_ on are not set
  size_t end_ = 0;
};

inline void ChunkBuf::CopyOut(size_t offset, std::span<std::byte> out) const {
  const size_t have = offset < end_ ? std::min(out.size(), end_ - offset) : 0;
  if (have > 0) std::memcpy(out.data(), data_.data() + offset, have);
  if (have < out.size()) std::memset(out.data() + have, 0, out.size() - have);
}

inline void ChunkBuf::Write(size_t offset, std::span<const std::byte> in) {
  if (offset > end_) std::memset(data_.data() + end_, 0, offset - end_);
  if (!in.empty()) std::memcpy(data_.data() + offset, in.data(), in.size());
  end_ = std::max(end_, offset + in.size());
}

inline void ChunkBuf::Zero(size_t from, size_t to) {
  if (from >= end_) return;
  if (to >= end_) {
    end_ = from;  // what lies past end_ is zero already
    return;
  }
  std::memset(data_.data() + from, 0, to - from);
}

struct Inode {
  explicit Inode(uint64_t n) : ino(n) {}
  ~Inode() {
    if (extent_cache_total != nullptr) extent_cache_total->fetch_sub(extent_fps.size());
  }
  Inode(const Inode&) = delete;
  Inode& operator=(const Inode&) = delete;
  const uint64_t ino;

  // Guarded by the inode's stripe lock (Volume::StripeFor):
  schema::InodeRecord rec;  // as persisted, except that mtime/ctime may be newer
  uint64_t size = 0;        // apparent size; rec.size is what data on disk covers
  int open_count = 0;
  bool purged = false;      // deleted; pending flushes must not commit
  bool stale = false;       // replaced by a restore: the handle no longer names a file
  uint64_t generation = 0;  // bumped by every commit of data or truncation
  std::map<uint64_t, std::shared_ptr<ChunkBuf>> dirty;     // chunk index -> written, not flushed
  std::map<uint64_t, std::shared_ptr<ChunkBuf>> inflight;  // chunk index -> being flushed
  Status write_error;       // a failed flush, reported by the next fsync or close
  // Chunks whose written data a failed flush had to drop (lost_error says
  // why): they read as EIO, no durable size covers them, and writes past one
  // that lies beyond the stored size are refused, until they are rewritten
  // whole or truncated away. The state stays in memory while any remain.
  std::set<uint64_t> lost;
  Status lost_error;
  bool attr_dirty = false;  // rec differs from the persisted record (mtime, ctime)

  // The fingerprints of stored chunks by chunk index, as their extent
  // records read while `generation` was extent_gen: a read that finds its
  // chunk here skips the extent lookup. Emptied when generation moves on.
  // extent_cache_total (the volume's count over all inodes) bounds them.
  std::unordered_map<uint64_t, Fingerprint> extent_fps;
  uint64_t extent_gen = 0;
  std::atomic<int64_t>* extent_cache_total = nullptr;

  // When the oldest unflushed write happened (ns, CLOCK_MONOTONIC); 0 if clean.
  std::atomic<int64_t> dirty_since{0};

  // One flush (or truncation) of this file at a time; taken before the stripe lock.
  std::mutex flush_mu;
};

// A chunk taken from a file for flushing.
struct FlushChunk {
  uint64_t index = 0;
  std::shared_ptr<ChunkBuf> buf;
  // Bytes of buf that it held below the file's size when it was taken: the
  // rest are zero (every buffer is zero past the end of the file), so
  // trimming need not scan them.
  size_t limit = 0;
  size_t length = 0;  // content bytes (trailing zeros trimmed); 0 is a hole
  Fingerprint fp;

  std::span<const std::byte> content() const { return buf->held().first(length); }
};

struct FlushItem {
  std::shared_ptr<Inode> inode;
  uint64_t size = 0;  // apparent size when the chunks were taken
  std::vector<FlushChunk> chunks;
};

}  // namespace qcfs::internal
