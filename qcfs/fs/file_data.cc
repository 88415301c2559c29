// Volume: the data path. Writes land in per-file chunk buffers; the flusher
// (or fsync, close, truncation) hashes and compresses them on the worker
// pool, has the chunk store write and sync the new chunks, then commits one
// metadata batch per file: extents, reference counts, inode size and times.
#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <future>
#include <unordered_map>

#include "qcfs/core/coding.h"
#include "qcfs/core/log.h"
#include "qcfs/fs/internal/inode.h"
#include "qcfs/fs/internal/time.h"
#include "qcfs/fs/volume.h"

namespace qcfs {

using internal::ChunkBuf;
using internal::FlushChunk;
using internal::FlushItem;
using internal::Inode;
using schema::ExtentRecord;
using schema::InodeRecord;

namespace {

constexpr uint64_t kMaxFileSize = 1ull << 60;
constexpr int64_t kDayNs = 24ll * 3600 * 1000000000;

// What the store's record calls take: pointers to a round's records.
std::vector<const EncodedRecord*> RecordList(const std::vector<EncodedRecord>& records) {
  std::vector<const EncodedRecord*> list;
  list.reserve(records.size());
  for (const EncodedRecord& r : records) list.push_back(&r);
  return list;
}


}  // namespace

// ---------------------------------------------------------------- buffers

Status Volume::ReserveBuffer() {
  QCFS_RETURN_IF_ERROR(store_->Reserve(store_->ReservationFor(chunk_size_)));
  std::lock_guard lock(flush_mu_);
  buffered_bytes_ += chunk_size_;
  return Status::Ok();
}

void Volume::ReleaseBuffer(size_t count) {
  if (count == 0) return;
  store_->Unreserve(count * store_->ReservationFor(chunk_size_));
  {
    std::lock_guard lock(flush_mu_);
    buffered_bytes_ -= std::min<uint64_t>(buffered_bytes_, uint64_t{count} * chunk_size_);
  }
  drained_cv_.notify_all();
}

void Volume::QueueForFlush(const InodeRef& inode) {
  bool wake;
  {
    std::lock_guard lock(flush_mu_);
    release_queue_.push_back(inode);
    // Closed files are flushed together (small ones share packs): within a
    // tick, or at once when many are waiting.
    wake = release_queue_.size() >= kReleaseBatch;
  }
  if (wake) flush_cv_.notify_one();
}

void Volume::WakeFlusher() {
  {
    std::lock_guard lock(flush_mu_);
    flush_requested_ = true;
  }
  flush_cv_.notify_one();
}

Result<std::shared_ptr<ChunkBuf>> Volume::DirtyBufferFor(const InodeRef& inode, uint64_t index,
                                                         std::unique_lock<std::mutex>* stripe, bool overwrite) {
  for (int attempt = 0;; ++attempt) {
    auto it = inode->dirty.find(index);
    if (it != inode->dirty.end()) return it->second;
    ChunkData base;
    auto inf = inode->inflight.find(index);
    std::shared_ptr<ChunkBuf> from_inflight = inf != inode->inflight.end() ? inf->second : nullptr;
    if (!from_inflight && !overwrite && index * chunk_size_ < inode->rec.size) {
      // Read-modify-write of a stored chunk: read it without the stripe lock,
      // or with it when the file kept changing underneath eight times.
      const bool hold = attempt >= 8;
      const uint64_t generation = inode->generation;
      if (!hold) stripe->unlock();
      Result<ChunkData> loaded = ChunkData();
      auto value = db_->Get(schema::ExtentKey(inode->ino, index));
      if (!value.ok()) {
        loaded = value.status();
      } else if (value->has_value()) {
        ExtentRecord e;
        if (!ExtentRecord::Decode(**value, &e)) {
          loaded = Status::Errorf(EIO, "inode {} chunk {}: malformed extent record", inode->ino, index);
        } else {
          loaded = store_->Read(e.fp);
        }
      }
      if (!hold) {
        if (modify_hook_) modify_hook_();
        stripe->lock();
        // Changed underneath (a buffer appeared, a commit or a truncation): look again.
        if (inode->generation != generation || inode->dirty.count(index) || inode->inflight.count(index)) continue;
      }
      if (!loaded.ok()) {
        if (loaded.status().code() == ENOENT && !hold) continue;  // replaced by a concurrent flush
        return loaded.status().WithContext(fmt::format("reading inode {} chunk {} to modify it", inode->ino, index));
      }
      base = *loaded;
    }
    QCFS_RETURN_IF_ERROR(ReserveBuffer());
    auto buf = std::make_shared<ChunkBuf>(chunk_size_);
    buf->seq = write_seq_.fetch_add(1);
    if (!overwrite) {
      if (from_inflight) {
        buf->Write(0, from_inflight->held());
      } else if (base) {
        buf->Write(0, std::span<const std::byte>(*base).first(std::min<size_t>(base->size(), chunk_size_)));
      }
      // Bytes past the end of the file are zero in every buffer.
      const uint64_t start = index * chunk_size_;
      if (start + chunk_size_ > inode->size) {
        buf->Zero(inode->size > start ? static_cast<size_t>(inode->size - start) : 0, chunk_size_);
      }
    }
    inode->dirty.emplace(index, buf);
    if (inode->dirty_since.load() == 0) inode->dirty_since.store(internal::MonoNs());
    return buf;
  }
}

// ---------------------------------------------------------------- open / close

Result<Attr> Volume::Open(uint64_t ino, int flags) {
  const bool writing = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
  if (IsView(ino)) {
    if (writing) return ReadOnlyView();
    return ViewGetAttr(ino);
  }
  QCFS_ASSIGN_OR_RETURN(InodeRef inode, Acquire(ino));
  bool truncate = false;
  {
    std::lock_guard stripe(StripeFor(ino));
    if (inode->stale) return Status::Errorf(ESTALE, "inode {} was replaced by a snapshot restore", ino);
    if (inode->purged) return Status::Errorf(ENOENT, "inode {} was deleted", ino);
    if (writing && options_.read_only) return Status::Error(EROFS, "volume is mounted read-only");
    if (writing && S_ISDIR(inode->rec.mode)) return Status::Error(EISDIR, "is a directory");
    inode->open_count += 1;
    truncate = (flags & O_TRUNC) && S_ISREG(inode->rec.mode);  // even when empty: mtime and ctime change
  }
  if (truncate) {
    // O_TRUNC arrives with the open (the kernel's atomic_o_trunc).
    Status s = Truncate(inode, 0, internal::NowNs());
    if (!s.ok()) {
      Release(ino).IgnoreError();
      return s;
    }
  }
  std::lock_guard stripe(StripeFor(ino));
  return ToAttr(ino, inode->rec, inode.get());
}

Status Volume::Release(uint64_t ino) {
  if (IsView(ino)) return Status::Ok();
  InodeRef inode = FindState(ino);
  if (!inode) return Status::Ok();
  bool purge = false;
  bool dirty = false;
  {
    std::lock_guard stripe(StripeFor(ino));
    if (inode->open_count > 0) inode->open_count -= 1;
    if (inode->stale && inode->open_count == 0) inode->purged = true;
    purge = inode->open_count == 0 && inode->rec.nlink == 0 && !inode->purged;
    dirty = !inode->dirty.empty() || inode->attr_dirty;
  }
  if (purge) {
    QCFS_RETURN_IF_ERROR(Purge(ino));
  } else if (dirty) {
    QueueForFlush(inode);
  }
  MaybeDropState(inode);
  return Status::Ok();
}

Status Volume::FlushHandle(uint64_t ino) {
  if (IsView(ino)) return Status::Ok();
  InodeRef inode = FindState(ino);
  if (!inode) return Status::Ok();
  Status err;
  bool dirty;
  {
    std::lock_guard stripe(StripeFor(ino));
    err = std::exchange(inode->write_error, Status::Ok());
    dirty = !inode->dirty.empty();
  }
  if (dirty) QueueForFlush(inode);
  return err;
}

Status Volume::Fsync(uint64_t ino, bool datasync) {
  (void)datasync;  // the inode record travels with the data batch either way
  if (IsView(ino)) return Status::Ok();
  QCFS_RETURN_IF_ERROR(CheckWritable());
  InodeRef inode = FindState(ino);
  if (inode) {
    QCFS_RETURN_IF_ERROR(FlushInodes({inode}));
    std::lock_guard stripe(StripeFor(ino));
    QCFS_RETURN_IF_ERROR(std::exchange(inode->write_error, Status::Ok()));
  }
  QCFS_RETURN_IF_ERROR(db_->SyncWal());
  return store_->SyncFreed();
}

// ---------------------------------------------------------------- read

Result<size_t> Volume::Read(uint64_t ino, uint64_t offset, std::span<std::byte> out) {
  if (IsView(ino)) return ViewRead(ino, offset, out);
  QCFS_ASSIGN_OR_RETURN(InodeRef inode, Acquire(ino));
  struct Pending {
    uint64_t index;
    size_t in_chunk;
    size_t length;
    std::byte* dest;
    std::optional<Fingerprint> fp;  // known from the inode's extent cache
  };
  size_t total = 0;
  Status result;
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::vector<Pending> pending;
    uint64_t generation;
    {
      std::lock_guard stripe(StripeFor(ino));
      if (inode->stale) {
        result = Status::Errorf(ESTALE, "inode {} was replaced by a snapshot restore", ino);
        break;
      }
      if (inode->purged) {
        result = Status::Errorf(ENOENT, "inode {} was deleted", ino);
        break;
      }
      if (S_ISDIR(inode->rec.mode)) {
        result = Status::Error(EISDIR, "is a directory");
        break;
      }
      const uint64_t size = inode->size;
      if (offset >= size || out.empty()) {
        total = 0;
        break;
      }
      total = static_cast<size_t>(std::min<uint64_t>(out.size(), size - offset));
      generation = inode->generation;
      if (inode->extent_gen != generation) {
        extent_cache_total_.fetch_sub(static_cast<int64_t>(inode->extent_fps.size()));
        inode->extent_fps.clear();
        inode->extent_gen = generation;
      }
      uint64_t pos = offset;
      const uint64_t end = offset + total;
      std::optional<uint64_t> lost;
      while (pos < end) {
        const uint64_t index = pos / chunk_size_;
        const size_t in_chunk = static_cast<size_t>(pos % chunk_size_);
        const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_size_ - in_chunk, end - pos));
        std::byte* dest = out.data() + (pos - offset);
        const ChunkBuf* buf = nullptr;
        if (auto it = inode->dirty.find(index); it != inode->dirty.end()) buf = it->second.get();
        else if (auto jt = inode->inflight.find(index); jt != inode->inflight.end()) buf = jt->second.get();
        if (buf == nullptr && inode->lost.count(index)) {
          lost = index;
          break;
        }
        if (buf != nullptr) {
          buf->CopyOut(in_chunk, {dest, n});
        } else if (pos >= inode->rec.size) {
          std::memset(dest, 0, n);  // beyond what is stored: a hole
        } else if (auto c = inode->extent_fps.find(index); c != inode->extent_fps.end()) {
          pending.push_back({index, in_chunk, n, dest, c->second});
        } else {
          pending.push_back({index, in_chunk, n, dest, std::nullopt});
        }
        pos += n;
      }
      if (lost) {
        result = LostChunk(*inode, *lost);
        break;
      }
    }
    result = Status::Ok();
    bool retry = false;
    // The chunks' fingerprints, then their bytes in one batch of device reads.
    std::vector<Fingerprint> fps;
    std::vector<const Pending*> stored;
    std::vector<std::pair<uint64_t, Fingerprint>> learned;
    for (const Pending& p : pending) {
      if (p.fp) {
        fps.push_back(*p.fp);
        stored.push_back(&p);
        continue;
      }
      auto value = db_->Get(schema::ExtentKey(ino, p.index));
      if (!value.ok()) {
        result = value.status();
        break;
      }
      if (!value->has_value()) {
        std::memset(p.dest, 0, p.length);
        continue;
      }
      ExtentRecord e;
      if (!ExtentRecord::Decode(**value, &e)) {
        result = Status::Errorf(EIO, "inode {} chunk {}: malformed extent record", ino, p.index);
        break;
      }
      fps.push_back(e.fp);
      stored.push_back(&p);
      learned.emplace_back(p.index, e.fp);
    }
    if (!result.ok()) break;
    if (!learned.empty()) {
      // Kept only if no commit or truncation happened since the records were
      // read: those bump the generation under the stripe lock.
      const int64_t limit = static_cast<int64_t>(options_.cache_bytes / 2048);
      std::lock_guard stripe(StripeFor(ino));
      if (inode->generation == generation && inode->extent_gen == generation) {
        inode->extent_cache_total = &extent_cache_total_;
        for (const auto& [index, fp] : learned) {
          if (extent_cache_total_.load(std::memory_order_relaxed) >= limit) break;
          if (inode->extent_fps.emplace(index, fp).second) extent_cache_total_.fetch_add(1);
        }
      }
    }
    std::vector<ChunkRange> ranges;
    ranges.reserve(stored.size());
    for (const Pending* p : stored) {
      ranges.push_back({static_cast<uint32_t>(p->in_chunk), static_cast<uint32_t>(p->length)});
    }
    auto chunks = store_->ReadRanges(fps, ranges);
    for (size_t k = 0; k < stored.size(); ++k) {
      const Pending& p = *stored[k];
      auto& piece = chunks[k];
      if (!piece.ok()) {
        // ENOENT: replaced by a concurrent flush; look again.
        retry = piece.status().code() == ENOENT;
        result = Status::Errorf(EIO, "inode {} chunk {}: {}", ino, p.index, piece.status().ToString());
        break;
      }
      // The piece starts at or before the range and holds all the chunk has of it.
      const auto& bytes = *piece->data;
      const size_t at = p.in_chunk - piece->offset;
      size_t have = bytes.size() > at ? std::min(bytes.size() - at, p.length) : 0;
      if (have > 0) std::memcpy(p.dest, bytes.data() + at, have);
      if (have < p.length) std::memset(p.dest + have, 0, p.length - have);
    }
    if (!retry) break;
  }
  MaybeDropState(inode);
  QCFS_RETURN_IF_ERROR(result);
  MaybeUpdateAtime(ino);
  return total;
}

void Volume::MaybeUpdateAtime(uint64_t ino) {
  if (options_.atime == AtimeMode::kNoatime || options_.read_only || IsView(ino)) return;
  const int64_t now = internal::NowNs();
  {
    std::lock_guard stripe(StripeFor(ino));
    InodeRef state = FindState(ino);
    InodeRecord rec;
    if (state) {
      rec = state->rec;
    } else {
      auto r = LoadRecord(ino);
      if (!r.ok()) return;
      rec = *r;
    }
    bool update = options_.atime == AtimeMode::kStrictatime || rec.atime_ns <= rec.mtime_ns ||
                  rec.atime_ns <= rec.ctime_ns || now - rec.atime_ns >= kDayNs;
    if (!update) return;
    rec.atime_ns = now;
    auto scope = BeginCommit();
    rocksdb::WriteBatch batch;
    internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
    if (!PutInode(&vb, ino, rec).ok() || !WriteBatch(&batch).ok()) return;
    if (state) state->rec.atime_ns = now;
  }
  if (options_.on_attr_changed) options_.on_attr_changed(ino);
}

// ---------------------------------------------------------------- write

Result<size_t> Volume::Write(uint64_t ino, uint64_t offset, std::span<const std::byte> data, bool append,
                             bool cached) {
  QCFS_RETURN_IF_ERROR(CheckWritable());
  if (IsView(ino)) return ReadOnlyView();
  if (data.empty()) return size_t{0};
  QCFS_ASSIGN_OR_RETURN(InodeRef inode, Acquire(ino));
  {
    // Backpressure: wait while buffered data is at its limit.
    const uint64_t need = (data.size() / chunk_size_ + 2) * chunk_size_;
    std::unique_lock lock(flush_mu_);
    if (buffered_bytes_ + need > buffer_limit_) {
      flush_requested_ = true;
      flush_cv_.notify_one();
      drained_cv_.wait(lock, [&] {
        return stopping_ || buffered_bytes_ == 0 || buffered_bytes_ + need <= buffer_limit_;
      });
    }
  }
  Status result;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_lock stripe(StripeFor(ino));
    if (inode->stale) return Status::Errorf(ESTALE, "inode {} was replaced by a snapshot restore", ino);
    if (inode->purged) return Status::Errorf(ENOENT, "inode {} was deleted", ino);
    if (!S_ISREG(inode->rec.mode)) return Status::Error(EINVAL, "not a regular file");
    uint64_t pos = append ? inode->size : offset;
    if (pos + data.size() > kMaxFileSize || pos + data.size() < pos) {
      return Status::Error(EFBIG, "file would exceed the maximum size");
    }
    const uint64_t start = pos;
    const uint64_t end = pos + data.size();
    result = Status::Ok();
    bool refused = false;  // past or into a lost chunk: no retry helps
    while (pos < end) {
      const uint64_t index = pos / chunk_size_;
      const size_t in_chunk = static_cast<size_t>(pos % chunk_size_);
      const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_size_ - in_chunk, end - pos));
      const bool overwrite = in_chunk == 0 && n == chunk_size_;
      if (!inode->lost.empty()) {
        // Past a chunk whose data was lost beyond the stored size, no size
        // could be made durable; into a lost chunk, only a whole new one.
        const uint64_t first = *inode->lost.begin();
        const bool beyond = (first + 1) * chunk_size_ > inode->rec.size;
        if ((beyond && index > first) || (inode->lost.count(index) && !overwrite)) {
          // ENOSPC when that is why: the writer learns the volume is full.
          result = LostChunk(*inode, beyond && index > first ? first : index,
                             inode->lost_error.code() == ENOSPC ? ENOSPC : EIO);
          refused = true;
          break;
        }
        inode->lost.erase(index);
      }
      auto buf = DirtyBufferFor(inode, index, &stripe, overwrite);
      if (!buf.ok()) {
        result = buf.status();
        break;
      }
      (*buf)->Write(in_chunk, data.subspan(pos - start, n));
      pos += n;
      // Extend as we go, so that a later buffer of this write is not zeroed past the old end.
      if (pos > inode->size) inode->size = pos;
    }
    if (!cached) inode->rec.mtime_ns = inode->rec.ctime_ns = internal::NowNs();
    inode->attr_dirty = true;
    if (result.ok()) break;
    if (cached && result.code() == ENOSPC && (attempt > 0 || refused)) {
      MarkLost(inode.get(), pos / chunk_size_, end, result);
      stripe.unlock();
      if (options_.on_data_lost) options_.on_data_lost(ino);
      return result;
    }
    if (result.code() != ENOSPC || attempt > 0 || refused) return result;
    // Out of space: flush what is buffered (its reservations shrink to what
    // it really takes) and try once more.
    stripe.unlock();
    QCFS_RETURN_IF_ERROR(Sync());
  }
  bool pressure;
  {
    std::lock_guard lock(flush_mu_);
    pressure = buffered_bytes_ > buffer_limit_ / 4;
  }
  if (pressure) WakeFlusher();
  return data.size();
}

// ---------------------------------------------------------------- flush

Status Volume::FlushInodes(std::vector<InodeRef> inodes) {
  // Ordered by inode number, then object: after a restore two states can
  // share a number, and each mutex must be taken once.
  std::sort(inodes.begin(), inodes.end(), [](const InodeRef& a, const InodeRef& b) {
    return a->ino != b->ino ? a->ino < b->ino : std::less<internal::Inode*>()(a.get(), b.get());
  });
  inodes.erase(std::unique(inodes.begin(), inodes.end()), inodes.end());
  const uint64_t upto = write_seq_.load();
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(inodes.size());
  for (const InodeRef& inode : inodes) locks.emplace_back(inode->flush_mu);
  return FlushLocked(inodes, upto);
}

Status Volume::FlushLocked(const std::vector<InodeRef>& inodes, uint64_t upto) {
  // Three stages overlap, each taking rounds in order: round k+2 is hashed
  // and compressed here (on the pool) while round k+1's records are written
  // and synced on the write thread and round k's metadata is committed on
  // the commit thread. A commit waits for its round's write, so chunk data
  // is durable before the batch that references it. At most two rounds are
  // in flight besides the one being prepared.
  struct Round {
    std::vector<FlushItem> items;
    std::vector<EncodedRecord> records;
    Status prepared;
    std::future<Status> written;
  };
  std::deque<std::future<Status>> committing;  // oldest first
  Status first;
  auto settle_one = [&] {
    Status s = committing.front().get();
    committing.pop_front();
    if (first.ok()) first = s;
  };
  for (;;) {
    bool more = false;
    auto round = std::make_shared<Round>();
    round->prepared = FlushRound(inodes, upto, &more, &round->items, &round->records);
    while (committing.size() >= 2) settle_one();
    if (round->items.empty()) break;
    if (!more || !first.ok()) {
      // The last round, or one after a failure, is written and committed
      // here, after the rounds before it.
      while (!committing.empty()) settle_one();
      Status s = CommitFlush(round->items, round->records, WriteFlush(round->records, round->prepared));
      if (first.ok()) first = s;
      break;
    }
    auto write = std::make_shared<std::packaged_task<Status()>>(
        [this, round] { return WriteFlush(round->records, round->prepared); });
    round->written = write->get_future();
    write_pool_->Submit([write] { (*write)(); });
    auto commit = std::make_shared<std::packaged_task<Status()>>(
        [this, round] { return CommitFlush(round->items, round->records, round->written.get()); });
    committing.push_back(commit->get_future());
    commit_pool_->Submit([commit] { (*commit)(); });
  }
  while (!committing.empty()) settle_one();
  return first;
}

uint64_t Volume::DurableSizeWithout(const Inode& inode) const {
  // Chunks left behind (for a later round, or written after the flush
  // began) whose bytes lie beyond the stored size are not stored yet: a
  // size reaching into one would read as zeros after a crash. Whatever
  // lies below the stored size is at worst its older content.
  uint64_t size = inode.size;
  for (const auto& [index, buf] : inode.dirty) {
    size = std::min(size, std::max(inode.rec.size, index * chunk_size_));
  }
  if (!inode.lost.empty()) size = std::min(size, std::max(inode.rec.size, *inode.lost.begin() * chunk_size_));
  return size;
}

void Volume::MarkLost(Inode* inode, uint64_t from_index, uint64_t end, const Status& why) {
  // The chunks from the refused write's first unbuffered byte to its end:
  // the bytes of them that were buffered are dropped too (a chunk is stored
  // whole or not at all), and the file keeps its apparent size, so that
  // readers get EIO there, not zeros.
  const uint64_t last = (end - 1) / chunk_size_;
  size_t dropped = 0;
  for (uint64_t index = from_index; index <= last; ++index) {
    if (inode->dirty.erase(index)) ++dropped;
    inode->lost.insert(index);
  }
  ReleaseBuffer(dropped);
  inode->size = std::max(inode->size, end);
  inode->lost_error = why;
  inode->write_error = why;
}

Status Volume::LostChunk(const Inode& inode, uint64_t index, int code) const {
  return Status::Errorf(code, "inode {} chunk {} (bytes from {}): its data could not be stored ({}); rewrite or truncate it",
                        inode.ino, index, index * chunk_size_, inode.lost_error.ToString());
}

Status Volume::FlushRound(const std::vector<InodeRef>& inodes, uint64_t upto, bool* more,
                          std::vector<FlushItem>* out_items, std::vector<EncodedRecord>* out_records) {
  // Take chunks written up to `upto`, at most round_bytes_ of them: the
  // round's encoded records must fit the memory budget too. Whatever is
  // taken goes to the caller's `items` (for CommitFlush), even on failure.
  std::vector<FlushItem>& items = *out_items;
  std::vector<EncodedRecord>& records = *out_records;
  uint64_t taken = 0;
  *more = false;
  for (const InodeRef& inode : inodes) {
    std::lock_guard stripe(StripeFor(inode->ino));
    if (inode->purged) continue;
    FlushItem item;
    item.inode = inode;
    for (auto it = inode->dirty.begin(); it != inode->dirty.end();) {
      if (it->second->seq > upto) {  // written after the flush began
        ++it;
        continue;
      }
      if (taken >= round_bytes_) {
        *more = true;
        break;
      }
      FlushChunk c;
      c.index = it->first;
      c.buf = it->second;
      const uint64_t start = c.index * chunk_size_;
      c.limit = inode->size > start ? static_cast<size_t>(std::min<uint64_t>(c.buf->end(), inode->size - start)) : 0;
      inode->inflight[c.index] = c.buf;
      item.chunks.push_back(std::move(c));
      taken += chunk_size_;
      it = inode->dirty.erase(it);
    }
    item.size = DurableSizeWithout(*inode);
    if (inode->dirty.empty()) inode->dirty_since.store(0);
    if (item.chunks.empty() && !inode->attr_dirty && item.size == inode->rec.size) continue;
    items.push_back(std::move(item));
  }
  if (items.empty()) {
    *more = false;
    return Status::Ok();
  }

  // 1. Fingerprints, on the pool.
  std::vector<FlushChunk*> all;
  for (FlushItem& item : items) {
    for (FlushChunk& c : item.chunks) all.push_back(&c);
  }
  pool_->ParallelFor(all.size(), [&](size_t i) {
    FlushChunk* c = all[i];
    c->length = TrimmedLength(c->buf->held().first(c->limit));
    if (c->length > 0) c->fp = Fingerprint::Of(c->content());
  });

  // 2. Dedup: only content the store does not hold is compressed and written.
  std::vector<Fingerprint> distinct;
  std::vector<FlushChunk*> firsts;
  {
    std::unordered_map<Fingerprint, bool, FingerprintHash> seen;
    for (FlushChunk* c : all) {
      if (c->length == 0 || !seen.emplace(c->fp, true).second) continue;
      distinct.push_back(c->fp);
      firsts.push_back(c);
    }
  }
  auto known_or = store_->Known(distinct);
  if (!known_or.ok()) return known_or.status();
  const std::vector<bool>& known = *known_or;

  // 3. New chunks become records: large ones on their own, small ones packed
  //    together up to a chunk's worth of content, compressed on the pool.
  std::vector<std::vector<ChunkContent>> jobs;
  std::vector<ChunkContent> pack;
  uint64_t pack_bytes = 0;
  for (size_t i = 0; i < firsts.size(); ++i) {
    if (known[i]) continue;
    ChunkContent cc{firsts[i]->fp, firsts[i]->content()};
    if (cc.content.size() >= chunk_size_ / 2) {
      jobs.push_back({cc});
      continue;
    }
    if (pack_bytes + cc.content.size() > chunk_size_ && !pack.empty()) {
      jobs.push_back(std::move(pack));
      pack.clear();
      pack_bytes = 0;
    }
    pack.push_back(cc);
    pack_bytes += cc.content.size();
  }
  if (!pack.empty()) jobs.push_back(std::move(pack));
  records.resize(jobs.size());
  const CompressionSpec spec = compression_;
  pool_->ParallelFor(jobs.size(), [&](size_t i) {
    // A chunk stored raw is written from its buffer, held until the flush ends.
    records[i] = jobs[i].size() == 1 ? EncodeChunk(jobs[i][0], spec, /*borrow_raw=*/true) : EncodePack(jobs[i], spec);
  });
  return Status::Ok();
}

Status Volume::WriteFlush(const std::vector<EncodedRecord>& records, Status prepared) {
  if (!prepared.ok()) return prepared;
  uint64_t bytes = 0;
  for (const EncodedRecord& r : records) bytes += r.size();
  QCFS_RETURN_IF_ERROR(store_->MakeRoom(bytes));
  return store_->WriteRecords(RecordList(records));
}

Status Volume::CommitFlush(std::vector<FlushItem>& items, const std::vector<EncodedRecord>& records,
                           Status written) {
  if (commit_hook_) commit_hook_();

  Status first;
  for (FlushItem& item : items) {
    Inode* in = item.inode.get();
    size_t released = 0;
    {
      std::lock_guard stripe(StripeFor(in->ino));
      Status s = written;
      // An item of attributes only pins nothing: if a newer state (or a
      // direct write of the record) took over since the round began, this
      // one's record is stale and must not overwrite the stored one.
      if (s.ok() && !in->purged && FindState(in->ino) == item.inode) {
        auto scope = BeginCommit();
        auto txn = store_->Begin();
        rocksdb::WriteBatch batch;
        internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
        InodeRecord rec = in->rec;
        for (FlushChunk& c : item.chunks) {
          std::string key = schema::ExtentKey(in->ino, c.index);
          auto old = db_->Get(key);
          if (!old.ok()) {
            s = old.status();
            break;
          }
          ExtentRecord prev;
          bool had = old->has_value() && ExtentRecord::Decode(**old, &prev);
          if (had && c.length > 0 && prev.fp == c.fp) continue;  // unchanged
          Result<bool> kept = false;
          if (c.length == 0) {
            if (!had) continue;
            kept = vb.Delete(key, &*old);
            rec.chunks -= std::min<uint64_t>(rec.chunks, 1);
          } else {
            s = txn->AddRef(ChunkContent{c.fp, c.content()}, compression_);
            if (!s.ok()) break;
            std::string v;
            ExtentRecord{vb.epoch(), c.fp, static_cast<uint32_t>(c.length)}.EncodeTo(&v);
            kept = vb.Put(key, v, &*old);
            if (!had) rec.chunks += 1;
          }
          s = kept.status();
          if (s.ok() && had) s = *kept ? (txn->AddHistory(prev.raw_len), Status::Ok()) : txn->DropRef(prev.fp);
          if (!s.ok()) break;
        }
        if (s.ok()) {
          rec.size = std::max(item.size, rec.size);
          rec.size = std::min(rec.size, in->size);
          s = PutInode(&vb, in->ino, rec);
        }
        if (s.ok()) s = txn->Prepare(&batch);
        if (s.ok()) s = WriteBatch(&batch);
        if (s.ok()) {
          txn->Committed();
          in->rec.size = rec.size;
          in->rec.chunks = rec.chunks;
          in->attr_dirty = false;
          in->generation += 1;
        }
      }
      if (!s.ok() && !in->purged) {
        Log(LogLevel::kError, "flushing inode {} failed: {}", in->ino, s.ToString());
        in->write_error = s;
        if (first.ok()) first = s;
        // A chunk written again since was copied from this buffer: only
        // the others lose what they held.
        for (const FlushChunk& c : item.chunks) {
          if (in->dirty.count(c.index) == 0) in->lost.insert(c.index);
        }
        if (!in->lost.empty()) in->lost_error = s;
      }
      for (FlushChunk& c : item.chunks) {
        auto it = in->inflight.find(c.index);
        if (it != in->inflight.end() && it->second == c.buf) in->inflight.erase(it);
        ++released;
      }
    }
    ReleaseBuffer(released);
    if (!in->lost.empty() && options_.on_data_lost) options_.on_data_lost(in->ino);
  }
  // Records that were not written made no provisional chunks.
  if (written.ok()) store_->ForgetProvisional(RecordList(records));
  for (FlushItem& item : items) MaybeDropState(item.inode);
  return first;
}

Status Volume::Sync() {
  if (options_.read_only) return Status::Ok();
  std::vector<InodeRef> all;
  {
    std::lock_guard lock(states_mu_);
    for (auto& [ino, inode] : states_) all.push_back(inode);
  }
  Status s = FlushInodes(all);
  Status w = db_->SyncWal();
  if (s.ok()) s = w;
  Status f = store_->SyncFreed();
  if (s.ok()) s = f;
  return s;
}

void Volume::FlusherLoop() {
  std::unique_lock lock(flush_mu_);
  const auto tick = std::chrono::milliseconds(std::clamp<uint32_t>(options_.flush_interval_ms / 5, 100, 1000));
  int64_t last_meta_sync = internal::MonoNs();
  while (!stopping_) {
    flush_cv_.wait_for(lock, tick,
                       [&] { return stopping_ || flush_requested_ || release_queue_.size() >= kReleaseBatch; });
    if (stopping_) break;
    const bool pressure = flush_requested_ || buffered_bytes_ > buffer_limit_ / 4;
    flush_requested_ = false;
    std::vector<InodeRef> todo = std::move(release_queue_);
    release_queue_.clear();
    lock.unlock();

    const int64_t now = internal::MonoNs();
    const int64_t max_age = int64_t{options_.flush_interval_ms} * 1000000;
    {
      std::lock_guard states(states_mu_);
      for (auto& [ino, inode] : states_) {
        int64_t since = inode->dirty_since.load();
        if (since != 0 && (pressure || now - since >= max_age)) todo.push_back(inode);
      }
    }
    if (!todo.empty()) {
      Status s = FlushInodes(std::move(todo));
      if (!s.ok()) Log(LogLevel::kError, "background flush: {}", s.ToString());
    }
    Status s = store_->SyncFreed();
    if (!s.ok()) Log(LogLevel::kError, "background sync: {}", s.ToString());
    // Metadata written since the last sync becomes durable within the
    // flush interval too, so a killed daemon or a power cut loses at most
    // that much of what nobody fsync'd (like ext4's commit interval).
    if (s.ok() && db_->HasUnsyncedWrites() && now - last_meta_sync >= max_age) {
      last_meta_sync = now;
      Status w = db_->SyncWal();
      if (!w.ok()) Log(LogLevel::kError, "background metadata sync: {}", w.ToString());
    }
    lock.lock();
    ++flush_rounds_;
    drained_cv_.notify_all();
  }
}

// ---------------------------------------------------------------- truncate, fallocate

Status Volume::Truncate(const InodeRef& inode, uint64_t size, int64_t now) {
  if (size > kMaxFileSize) return Status::Error(EFBIG, "size exceeds the maximum file size");
  std::lock_guard flush(inode->flush_mu);
  QCFS_RETURN_IF_ERROR(FlushLocked({inode}, write_seq_.load()));
  std::unique_lock stripe(StripeFor(inode->ino));
  if (inode->purged) return Status::Errorf(ENOENT, "inode {} was deleted", inode->ino);
  const uint64_t ino = inode->ino;
  InodeRecord rec = inode->rec;
  auto scope = BeginCommit();
  auto txn = store_->Begin();
  rocksdb::WriteBatch batch;
  internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
  // Removes (or replaces) a stored extent; a version a snapshot sees keeps its reference.
  auto retire = [&](Result<bool> kept, const ExtentRecord& old) -> Status {
    QCFS_RETURN_IF_ERROR(kept.status());
    if (*kept) {
      txn->AddHistory(old.raw_len);
      return Status::Ok();
    }
    return txn->DropRef(old.fp);
  };
  if (size < inode->size) {
    const uint64_t first_dead = (size + chunk_size_ - 1) / chunk_size_;
    size_t dropped = 0;
    for (auto it = inode->dirty.lower_bound(first_dead); it != inode->dirty.end();) {
      it = inode->dirty.erase(it);
      ++dropped;
    }
    ReleaseBuffer(dropped);
    auto it = db_->Iterate(schema::ExtentPrefix(ino));
    std::string from;
    PutBig64(&from, first_dead);
    for (it->Seek(from); it->Valid(); it->Next()) {
      ExtentRecord e;
      std::optional<std::string> old(std::string(it->value()));
      if (!ExtentRecord::Decode(it->value(), &e)) return Status::Errorf(EIO, "inode {}: malformed extent", ino);
      QCFS_RETURN_IF_ERROR(retire(vb.Delete(it->key(), &old), e));
      rec.chunks -= std::min<uint64_t>(rec.chunks, 1);
    }
    QCFS_RETURN_IF_ERROR(it->status());
    const size_t keep = static_cast<size_t>(size % chunk_size_);
    if (keep != 0) {
      const uint64_t index = size / chunk_size_;
      if (auto d = inode->dirty.find(index); d != inode->dirty.end()) {
        d->second->Zero(keep, chunk_size_);
      } else {
        // Rewrite the stored tail chunk with its bytes past the new end zeroed.
        std::string key = schema::ExtentKey(ino, index);
        QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(key));
        ExtentRecord e;
        if (value.has_value() && ExtentRecord::Decode(*value, &e)) {
          auto data = store_->Read(e.fp);
          if (!data.ok()) return data.status().WithContext(fmt::format("truncating inode {}", ino));
          std::vector<std::byte> content((*data)->begin(), (*data)->end());
          if (content.size() > keep) content.resize(keep);
          size_t len = TrimmedLength(content);
          if (len == 0) {
            QCFS_RETURN_IF_ERROR(retire(vb.Delete(key, &value), e));
            rec.chunks -= std::min<uint64_t>(rec.chunks, 1);
          } else {
            auto tail = std::span<const std::byte>(content).first(len);
            Fingerprint fp = Fingerprint::Of(tail);
            QCFS_RETURN_IF_ERROR(txn->AddRef(ChunkContent{fp, tail}, compression_));
            std::string v;
            ExtentRecord{vb.epoch(), fp, static_cast<uint32_t>(len)}.EncodeTo(&v);
            QCFS_RETURN_IF_ERROR(retire(vb.Put(key, v, &value), e));
          }
        }
      }
    }
  }
  rec.size = size;
  rec.mtime_ns = rec.ctime_ns = now;
  QCFS_RETURN_IF_ERROR(PutInode(&vb, ino, rec));
  QCFS_RETURN_IF_ERROR(txn->Prepare(&batch));
  QCFS_RETURN_IF_ERROR(WriteBatch(&batch));
  txn->Committed();
  inode->lost.erase(inode->lost.lower_bound((size + chunk_size_ - 1) / chunk_size_), inode->lost.end());
  inode->rec = rec;
  inode->size = size;
  inode->generation += 1;
  return Status::Ok();
}

Status Volume::ZeroRange(const InodeRef& inode, uint64_t offset, uint64_t length) {
  std::lock_guard flush(inode->flush_mu);
  QCFS_RETURN_IF_ERROR(FlushLocked({inode}, write_seq_.load()));
  std::unique_lock stripe(StripeFor(inode->ino));
  if (inode->purged) return Status::Errorf(ENOENT, "inode {} was deleted", inode->ino);
  const uint64_t ino = inode->ino;
  const uint64_t end = std::min(offset + length, inode->size);
  if (offset >= end) return Status::Ok();
  const uint64_t first_full = (offset + chunk_size_ - 1) / chunk_size_;
  const uint64_t last_full = end / chunk_size_;  // exclusive
  if (first_full < last_full) {
    size_t dropped = 0;
    for (auto it = inode->dirty.lower_bound(first_full); it != inode->dirty.end() && it->first < last_full;) {
      it = inode->dirty.erase(it);
      ++dropped;
    }
    ReleaseBuffer(dropped);
    auto scope = BeginCommit();
    auto txn = store_->Begin();
    rocksdb::WriteBatch batch;
    internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
    InodeRecord rec = inode->rec;
    auto it = db_->Iterate(schema::ExtentPrefix(ino));
    std::string from;
    PutBig64(&from, first_full);
    for (it->Seek(from); it->Valid(); it->Next()) {
      uint64_t index;
      if (!schema::ParseU64Suffix(it->key_suffix().substr(0, 8), &index) || index >= last_full) break;
      ExtentRecord e;
      if (!ExtentRecord::Decode(it->value(), &e)) return Status::Errorf(EIO, "inode {}: malformed extent", ino);
      std::optional<std::string> old(std::string(it->value()));
      QCFS_ASSIGN_OR_RETURN(bool kept, vb.Delete(it->key(), &old));
      if (kept) txn->AddHistory(e.raw_len);
      else QCFS_RETURN_IF_ERROR(txn->DropRef(e.fp));
      rec.chunks -= std::min<uint64_t>(rec.chunks, 1);
    }
    QCFS_RETURN_IF_ERROR(it->status());
    QCFS_RETURN_IF_ERROR(PutInode(&vb, ino, rec));
    QCFS_RETURN_IF_ERROR(txn->Prepare(&batch));
    QCFS_RETURN_IF_ERROR(WriteBatch(&batch));
    txn->Committed();
    inode->rec.chunks = rec.chunks;
    inode->generation += 1;
  }
  // Partial chunks at either end are zeroed in buffers.
  auto zero_part = [&](uint64_t from, uint64_t to) -> Status {
    if (from >= to) return Status::Ok();
    const uint64_t index = from / chunk_size_;
    QCFS_ASSIGN_OR_RETURN(auto buf, DirtyBufferFor(inode, index, &stripe, false));
    const size_t at = static_cast<size_t>(from % chunk_size_);
    buf->Zero(at, at + static_cast<size_t>(to - from));
    return Status::Ok();
  };
  if (first_full > last_full) {  // the range lies inside one chunk
    QCFS_RETURN_IF_ERROR(zero_part(offset, end));
  } else {
    QCFS_RETURN_IF_ERROR(zero_part(offset, std::min(end, first_full * chunk_size_)));
    if (last_full >= first_full) QCFS_RETURN_IF_ERROR(zero_part(std::max(offset, last_full * chunk_size_), end));
  }
  const int64_t now = internal::NowNs();
  inode->rec.mtime_ns = inode->rec.ctime_ns = now;
  inode->attr_dirty = true;
  return Status::Ok();
}

Status Volume::Fallocate(uint64_t ino, int mode, uint64_t offset, uint64_t length) {
  QCFS_RETURN_IF_ERROR(CheckWritable());
  if (IsView(ino)) return ReadOnlyView();
  if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
    return Status::Error(EOPNOTSUPP, "fallocate mode not supported (collapse/insert range)");
  }
  if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE)) {
    return Status::Error(EOPNOTSUPP, "punching a hole requires FALLOC_FL_KEEP_SIZE");
  }
  if (length == 0) return Status::Error(EINVAL, "length must be positive");
  if (offset + length > kMaxFileSize || offset + length < offset) return Status::Error(EFBIG, "range too large");
  QCFS_ASSIGN_OR_RETURN(InodeRef inode, Acquire(ino));
  Status s;
  {
    std::lock_guard stripe(StripeFor(ino));
    if (!S_ISREG(inode->rec.mode)) s = Status::Error(S_ISDIR(inode->rec.mode) ? EISDIR : ENODEV, "not a regular file");
  }
  if (s.ok() && (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) s = ZeroRange(inode, offset, length);
  if (s.ok() && !(mode & FALLOC_FL_PUNCH_HOLE)) {
    if (!(mode & FALLOC_FL_ZERO_RANGE) && store_->Usage().available_bytes < length) {
      s = Status::Error(ENOSPC, "not enough free space to allocate the range");
    }
    uint64_t size;
    {
      std::lock_guard stripe(StripeFor(ino));
      size = inode->size;
    }
    if (s.ok() && !(mode & FALLOC_FL_KEEP_SIZE) && offset + length > size) {
      s = Truncate(inode, offset + length, internal::NowNs());
    }
  }
  MaybeDropState(inode);
  return s;
}

}  // namespace qcfs
