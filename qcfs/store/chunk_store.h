// ChunkStore: the content-addressed chunk layer of a volume.
//
// A chunk is the content of one aligned range of a file (trailing zeros
// trimmed), identified by its SHA-256 fingerprint. The store keeps each
// distinct chunk once, compressed, in records appended to segments written
// sequentially, and counts the references to it. Small chunks are packed:
// several compressed together in one record, which compresses small files
// far better than each on its own. The index (fingerprint -> location,
// sizes, refcount), the reverse index (location -> fingerprint) and the
// segment usage table live in the metadata database; only per-segment
// live-byte counts and states are held in memory (a few bytes per segment).
//
// Writing happens in two steps. WriteRecords writes new records and syncs
// the device; their chunks are "provisional": known to the store, but not
// indexed, and their segments are left alone by the cleaner. Then a Txn
// turns reference changes into index, usage and stats records in the
// caller's WriteBatch; the caller writes the batch and calls Committed().
// So chunk data is durable before any batch references it. Space freed by
// a batch is reused only after that batch is durable (SyncFreed).
//
// Reads need no lock: a chunk moved by the cleaner is found again through
// the index, and a record that does not match what the index promised is
// never returned (EIO instead).
//
// Thread-safety: all public methods are thread-safe. Transactions are
// serialized; lock order: txn_mu_, write_mu_, state_mu_.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <rocksdb/write_batch.h>

#include "qcfs/core/fingerprint.h"
#include "qcfs/core/status.h"
#include "qcfs/core/uninit_bytes.h"
#include "qcfs/io/device.h"
#include "qcfs/meta/meta_db.h"
#include "qcfs/meta/metafs.h"
#include "qcfs/meta/schema.h"
#include "qcfs/store/codec.h"
#include "qcfs/store/superblock.h"

namespace qcfs {

struct StoreOptions {
  // Return freed segments to the device (punch holes / BLKDISCARD). Default on.
  bool discard = true;
  // Offline check: load segments whose ownership records disagree with the
  // chunk index instead of refusing, for check to report.
  bool tolerate_damage = false;
  // Segments kept free for the cleaner, beyond what users may fill. Default 2.
  uint32_t reserve_segments = 2;
  // The cleaner compacts segments whose live bytes are below this fraction
  // of the segment size. Default 0.9.
  double clean_below = 0.9;
  // Decompressed chunks cached for reads. Default 32 MiB. The locations of
  // up to read_cache_bytes / 128 chunks are kept besides (0: neither).
  size_t read_cache_bytes = 32ull << 20;
};

// A chunk's identity and content. The span must outlive the call it is
// passed to.
struct ChunkContent {
  Fingerprint fp;
  std::span<const std::byte> content;  // non-empty, trailing zeros trimmed
};

// A record ready to be written: built on any thread (compression is the
// expensive part), written by ChunkStore::WriteRecords.
struct EncodedRecord {
  struct Member {
    Fingerprint fp;
    uint32_t raw_len = 0;
    uint32_t pack_offset = 0;
    uint32_t share = 0;  // bytes of the record charged to this chunk
  };
  std::vector<std::byte> bytes;  // header, member or block table, and payload unless borrowed
  // A raw chunk's payload left where it is (EncodeChunk with borrow_raw):
  // the chunk's content, which must outlive the record. Empty otherwise.
  std::span<const std::byte> borrowed_payload;
  std::vector<Member> members;
  Codec codec = Codec::kNone;
  uint32_t pack_raw = 0;  // packs: decompressed payload length; 0 for one chunk

  size_t size() const { return bytes.size() + borrowed_payload.size(); }  // of the whole record
};

// A record for one chunk. With `borrow_raw`, a chunk stored raw is not
// copied into the record: its content becomes borrowed_payload.
EncodedRecord EncodeChunk(const ChunkContent& chunk, const CompressionSpec& spec, bool borrow_raw = false);
// A record packing several small chunks (REQUIRES: at least two, at most
// 1 MiB of content in all).
EncodedRecord EncodePack(std::span<const ChunkContent> chunks, const CompressionSpec& spec);

// Length of `data` without its trailing zero bytes (0 when all zero).
size_t TrimmedLength(std::span<const std::byte> data);

struct StoreUsage {
  schema::StoreStats stats;
  uint64_t segment_size = 0;
  uint64_t segment_count = 0;
  uint64_t free_segments = 0;     // reusable now
  uint64_t pending_segments = 0;  // freed, reusable after the next metadata sync
  uint64_t capacity_bytes = 0;    // all segments
  uint64_t live_bytes = 0;        // bytes of live records (== stats.stored_bytes)
  uint64_t reserved_bytes = 0;    // promised to buffered writes
  // What new data may still use: free and reclaimable space, less the
  // cleaner's reserve and what buffered writes hold.
  uint64_t available_bytes = 0;
};

// A chunk's content as the store hands it out: exactly its raw length,
// immutable, shared with the read cache. Not zeroed when allocated: the read
// or the decompression that fills it writes every byte.
using ChunkData = std::shared_ptr<const UninitBytes>;

// Part of a chunk a read wants: `length` bytes from `offset` (the chunk is
// zeros past its raw length). The default is all of it.
struct ChunkRange {
  uint32_t offset = 0;
  uint32_t length = UINT32_MAX;
};

// What a ranged read hands out: the chunk's bytes from `offset` on. It
// holds every byte of the chunk within the range asked for, and
// offset <= the range's offset; it may hold the whole chunk.
struct ChunkPiece {
  ChunkData data;
  uint32_t offset = 0;
};

class ChunkStore {
 public:
  // `space` owns the segments: the store takes free ones for data and gives
  // empty ones back. REQUIRES: device, db and space outlive the store.
  static Result<std::unique_ptr<ChunkStore>> Open(Device* device, MetaDb* db, MetaFs* space, const Superblock& sb,
                                                  const StoreOptions& options);
  ChunkStore(const ChunkStore&) = delete;
  ChunkStore& operator=(const ChunkStore&) = delete;
  ~ChunkStore();

  class Txn;
  // Starts a transaction. Blocks while another one is open.
  std::unique_ptr<Txn> Begin();

  // The content of a chunk, exactly raw_len bytes, shared with the read
  // cache. EIO when the stored record is damaged; ENOENT when the index has
  // no such chunk.
  Result<ChunkData> Read(const Fingerprint& fp);
  // Read() of several chunks; the records the cache lacks are read from the
  // device in one submission. One result per fingerprint, in order.
  std::vector<Result<ChunkData>> ReadMany(std::span<const Fingerprint> fps);
  // ReadMany() of a range of each chunk (one per fingerprint; EINVAL for
  // each when the counts differ). A chunk the
  // cache lacks and that is stored raw is read and verified only in the 4 KiB
  // blocks that hold its range; such a part is not cached.
  std::vector<Result<ChunkPiece>> ReadRanges(std::span<const Fingerprint> fps, std::span<const ChunkRange> ranges);

  // For each fingerprint, whether the store holds it (indexed or provisional).
  Result<std::vector<bool>> Known(std::span<const Fingerprint> fps);
  // Writes records and syncs the device; their chunks become provisional.
  // Chunks the store already holds are left out of the index later (the
  // duplicate bytes are dead space). Call ForgetProvisional with the same
  // records once the batches that reference them are written or abandoned.
  Status WriteRecords(std::span<const EncodedRecord* const> records);
  void ForgetProvisional(std::span<const EncodedRecord* const> records);

  // Promises `bytes` of future stored data to a buffered write. ENOSPC when
  // the volume cannot hold it even after cleaning.
  Status Reserve(uint64_t bytes);
  void Unreserve(uint64_t bytes);
  // Worst-case stored bytes of one chunk of `raw` bytes (what to reserve).
  uint64_t ReservationFor(uint64_t raw) const;

  // Makes space freed by written batches reusable: syncs the metadata log,
  // discards the freed segments, and returns them to the free list.
  Status SyncFreed();
  // Makes sure `bytes` of new records can be written without running out
  // of free segments: syncs freed space and runs the cleaner when needed.
  Status MakeRoom(uint64_t bytes);
  // Compacts partly dead segments until `want_free` segments are free or
  // nothing is left to gain, taking at most `max_victims` segments. Returns
  // the number of segments reclaimed.
  Result<uint64_t> Clean(uint64_t want_free, uint64_t max_victims = UINT64_MAX);
  // Adds segments at the end (a grown device whose new superblock is
  // durable). Call before MetaFs::Grow hands them out.
  void Grow(uint64_t segment_count);

  StoreUsage Usage() const;
  const Superblock& superblock() const { return sb_; }
  Device* device() const { return device_; }

  // Reads and checks the record holding a chunk: header, member table and
  // checksum; with `full`, also decompression and the fingerprint of the
  // content. Returns a description of the damage, or "".
  std::string VerifyChunk(const Fingerprint& fp, const schema::ChunkIndexRecord& rec, bool full);

  // Test hook: runs between a read's index lookup and its device read.
  void SetReadHook(std::function<void()> hook) { read_hook_ = std::move(hook); }

 private:
  friend class Txn;
  struct Location {
    uint32_t segment;
    uint32_t offset;
  };
  // Bytes staged for one write to a segment: owned (copied), or borrowed
  // from the caller until WriteStaged returns.
  struct Staged {
    uint32_t segment;
    uint32_t start;  // segment offset of the first byte
    std::vector<std::byte> bytes;
    std::span<const std::byte> borrowed;
    std::span<const std::byte> data() const { return borrowed.empty() ? std::span<const std::byte>(bytes) : borrowed; }
  };
  struct Provisional {
    schema::ChunkIndexRecord rec;  // refcount unused
    int users = 0;                 // WriteRecords calls that expect it
  };

  ChunkStore(Device* device, MetaDb* db, MetaFs* space, const Superblock& sb, const StoreOptions& options);
  // Free segments kept for metadata growth: data never takes them.
  uint64_t MetaReserve() const;
  Status Load();

  // Allocation and writing (write_mu_ held). Segments filled while staging
  // are appended to `closed`.
  Result<Location> Allocate(uint32_t record_len, std::vector<Staged>* staged, std::vector<uint32_t>* closed);
  Status OpenSegment(std::vector<Staged>* staged);
  // Stages one record, `head` then `tail` (either may be empty); `borrow`
  // writes it from the caller's buffers.
  Status StageRecord(std::span<const std::byte> head, std::span<const std::byte> tail, std::vector<Staged>* staged,
                     std::vector<uint32_t>* closed, Location* loc, bool borrow = false);
  // Writes staged bytes and syncs the device; the next write starts on a
  // fresh block.
  Status WriteStaged(std::vector<Staged>* staged, std::vector<uint32_t>* closed);
  // Writes staged bytes past the page cache: each run of contiguous pieces
  // starts on a block boundary (every write does), is copied into the aligned
  // bounce buffer and padded with zeros to the next block, which no later
  // write uses. Does not sync.
  Status WriteStagedDirect(const std::vector<Staged>& staged);

  uint64_t AvailableLocked() const;
  uint64_t ImmediateLocked() const;
  void FreeSegmentLocked(uint32_t segment);

  // Reads the record at `rec`'s location and extracts the chunk.
  Result<ChunkData> ReadChunk(const Fingerprint& fp, const schema::ChunkIndexRecord& rec);
  // The chunk's index record: ENOENT if the index has none, EIO if malformed.
  Result<schema::ChunkIndexRecord> IndexRecord(const Fingerprint& fp);
  // Where ReadChunk reads: EIO if `rec` points outside the segment area.
  Result<uint64_t> RecordOffset(const Fingerprint& fp, const schema::ChunkIndexRecord& rec) const;
  // Checks a record read from `rec`'s location and extracts the chunk; an
  // uncompressed plain record's payload buffer is moved out as the chunk.
  struct RecordRead;
  Result<ChunkPiece> DecodeChunk(const Fingerprint& fp, const schema::ChunkIndexRecord& rec, RecordRead* record) const;
  ChunkData CacheGet(const Fingerprint& fp);
  void CachePut(const Fingerprint& fp, ChunkData data);

  Device* const device_;
  MetaDb* const db_;
  MetaFs* const space_;
  Superblock sb_;  // segment_count changes (Grow) with state_mu_ held
  std::atomic<uint64_t> segment_count_;  // sb_.segment_count, for readers without state_mu_
  const StoreOptions options_;
  std::function<void()> read_hook_;

  std::mutex txn_mu_;    // serializes transactions
  std::mutex write_mu_;  // one writer appends to the open segment, from a block boundary

  // Guards the segment table, free and pending sets, stats, reservations,
  // provisional chunks, pins and the open segment.
  mutable std::mutex state_mu_;
  // kFree: not the store's (free, or metadata's: MetaFs knows which).
  enum SegmentState : uint8_t { kInUse = 0, kFree = 1, kPending = 2 };
  std::vector<uint32_t> live_;      // live bytes per segment
  std::vector<uint8_t> seg_state_;  // SegmentState per segment
  std::vector<uint32_t> pending_;   // freed by written batches, not yet durable
  std::unordered_map<Fingerprint, Provisional, FingerprintHash> provisional_;
  std::unordered_map<uint32_t, int> pinned_;  // segment -> provisional chunks in it
  schema::StoreStats stats_;
  uint64_t reserved_ = 0;
  // Written with write_mu_ and state_mu_ held; read with either.
  int64_t open_segment_ = -1;  // segment receiving new records, or -1
  uint32_t open_offset_ = 0;   // next record offset in it (4 KiB aligned between writes)
  // Block-aligned staging for direct writes, allocated at first use; guarded by write_mu_.
  struct FreeAligned {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, FreeAligned> bounce_;

  // Read cache of decompressed chunks (LRU). Guards cache_*.
  std::mutex cache_mu_;
  std::list<Fingerprint> cache_lru_;
  struct CacheEntry {
    ChunkData data;
    std::list<Fingerprint>::iterator lru;
  };
  std::unordered_map<Fingerprint, CacheEntry, FingerprintHash> cache_;
  size_t cache_bytes_ = 0;

  // Where chunks were last found, so that a read the chunk cache misses can
  // skip the index lookup. An entry may be stale (the cleaner moved the
  // chunk, or it was freed): its record then fails the checks and the read
  // looks the chunk up again. At most read_cache_bytes / kLocationEntryCost
  // entries; emptied when full. Guards locations_.
  static constexpr size_t kLocationEntryCost = 128;
  std::optional<schema::ChunkIndexRecord> LocationGet(const Fingerprint& fp);
  void LocationPut(const Fingerprint& fp, const schema::ChunkIndexRecord& rec);
  void LocationErase(const Fingerprint& fp);
  std::mutex loc_mu_;
  std::unordered_map<Fingerprint, schema::ChunkIndexRecord, FingerprintHash> locations_;
};

// A set of reference changes that commits with one batch.
class ChunkStore::Txn {
 public:
  ~Txn();  // without Committed(): abandons the changes
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  // Adds one reference to a chunk, storing it (compressed with `spec`) when
  // the store does not hold it yet.
  Status AddRef(const ChunkContent& chunk, const CompressionSpec& spec);
  // Adds one reference to a chunk the store holds. ENOENT if it does not.
  Status AddRefExisting(const Fingerprint& fp);
  // Drops one reference. A chunk without references is freed at commit.
  Status DropRef(const Fingerprint& fp);
  // Accounts `raw_len` referenced bytes as held only by a kept version
  // (snapshots): positive when a version is kept, negative when it goes.
  void AddHistory(int64_t raw_len) {
    new_stats_.history_bytes += static_cast<uint64_t>(raw_len);
    stats_changed_ = true;
  }

  // Writes records staged by this txn to the device, syncs it, and adds the
  // index, reverse index, segment usage and stats records to `batch`.
  Status Prepare(rocksdb::WriteBatch* batch);
  // Call once `batch` is written: applies the in-memory accounting.
  void Committed();

  bool has_changes() const { return !entries_.empty() || !moves_.empty() || stats_changed_; }

 private:
  friend class ChunkStore;
  explicit Txn(ChunkStore* store);

  struct Entry {
    schema::ChunkIndexRecord rec;
    bool existed = false;  // in the index before this txn
    uint64_t original_refcount = 0;
  };
  struct Move {  // a live chunk relocated by the cleaner
    Fingerprint fp;
    schema::ChunkIndexRecord old_rec;
    schema::ChunkIndexRecord new_rec;
  };

  // The entry of a chunk in the index or among provisional chunks, or null.
  Result<Entry*> Lookup(const Fingerprint& fp);
  Status Stage(std::span<const std::byte> record, Location* loc);
  // Relocates the live chunks of the record at (segment, offset).
  Status Relocate(uint32_t segment, uint32_t offset,
                  const std::vector<std::pair<Fingerprint, schema::ChunkIndexRecord>>& live);

  ChunkStore* store_;
  std::unique_lock<std::mutex> lock_;
  std::unique_lock<std::mutex> write_lock_;  // taken when the txn stages records
  std::unordered_map<Fingerprint, Entry, FingerprintHash> entries_;
  std::vector<Staged> staged_;
  std::vector<Move> moves_;
  std::vector<uint32_t> closed_segments_;  // filled during this txn
  std::unordered_map<uint32_t, int64_t> live_delta_;
  schema::StoreStats new_stats_;
  bool stats_changed_ = false;
  bool committed_ = false;
};

}  // namespace qcfs
