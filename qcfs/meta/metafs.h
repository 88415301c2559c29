// MetaFs: the device's space manager and the small file system that keeps
// the metadata database (RocksDB) on the device itself.
//
// The segment area of a device is shared: every segment is free, holds
// chunk data (the chunk store's), or holds metadata files (MetaFs's). MetaFs
// records who owns each segment, the metadata files (names, sizes, the
// device extents holding them) and its own journal, in an append-only
// journal of checksummed records. One of two root blocks (the one with the
// higher generation) points at the journal's first extent; the journal
// chains further extents with "continue at" records and is rewritten
// compactly (a new generation) when it has grown large. A generation's
// state spans as many chained extents as it needs: it is bounded by free
// metadata space, not by a segment.
//
// The journal is kept twice: every extent has a mirror extent of the same
// length in another metadata segment, and every record is written at the
// same position in both. Replay reads both copies record by record and
// takes the one that verifies; it stops where neither does: the journal's
// end, or a torn write. Damage to one copy of a record a sync made durable
// loses nothing (it is counted in journal_copies(); a read-write mount
// starts a new generation, which rewrites both copies). Only damage to both
// copies refuses the mount. A journal written before mirroring (its root
// names no mirror) is read from its one copy; the next generation has two.
//
// Metadata files are kept twice as well: every file extent has a mirror
// extent in another metadata segment, every write goes to both, and a
// checksum of each 4 KiB block (of the file's bytes in it) is journaled
// with the file's size. A read verifies each block and takes the mirror's
// where the primary's does not verify (counted in FileCopies); a block bad
// in both copies reads as EIO. Extents written before mirroring have one
// copy and blocks with no journaled checksum are read unverified.
//
// Durability: every record is written to the device as it is made; a device
// sync (Sync(), or any sync of the shared device) makes it durable. A
// metadata file's new size is journaled when the file is synced, so what
// RocksDB synced survives a power cut or a killed process, and what it only
// flushed may not (as RocksDB expects of a machine crash). Blocks freed by
// deleting a file are reused only after the next sync. The device is
// assumed to write a 4 KiB block atomically; where it does not (a torn
// write), or a block decays, the journal's other copy holds its records.
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "qcfs/core/status.h"
#include "qcfs/io/device.h"

namespace qcfs {

// Where MetaFs finds things on the device.
struct MetaFsLayout {
  uint64_t root_offset[2] = {8192, 12288};  // the two root blocks
  uint64_t data_offset = 1ull << 20;        // first segment
  uint32_t segment_size = 4u << 20;
  uint64_t segment_count = 0;
  std::array<uint8_t, 16> uuid{};           // the volume's; every root and record names it

  uint64_t SegmentOffset(uint32_t segment) const { return data_offset + uint64_t{segment} * segment_size; }
};

enum class SegmentUse : uint8_t { kFree = 0, kData = 1, kMeta = 2 };

struct MetaFsUsage {
  uint64_t meta_segments = 0;
  uint64_t data_segments = 0;
  uint64_t free_segments = 0;
  uint64_t file_bytes = 0;     // sizes of all metadata files
  uint64_t journal_bytes = 0;  // of the current journal generation
  uint64_t files = 0;
};

class MetaFs {
 public:
  // Starts an empty MetaFs on a device (mkfs): every segment free.
  static Result<std::unique_ptr<MetaFs>> Format(Device* device, const MetaFsLayout& layout);
  // What to do with a journal that ends before the records a sync made
  // durable (damage, not a crash): refuse (EUCLEAN), or roll the metadata
  // back to its last intact record (qcfs check --repair).
  enum class Damage { kRefuse, kRollBack };
  // Replays the journal of an existing one (and starts a fresh generation).
  static Result<std::unique_ptr<MetaFs>> Mount(Device* device, const MetaFsLayout& layout,
                                               Damage damage = Damage::kRefuse);
  // Replays it without writing anything; changes fail with EROFS.
  static Result<std::unique_ptr<MetaFs>> MountReadOnly(Device* device, const MetaFsLayout& layout,
                                                       Damage damage = Damage::kRefuse);
  MetaFs(const MetaFs&) = delete;
  MetaFs& operator=(const MetaFs&) = delete;
  ~MetaFs();

  // --- segments
  SegmentUse Use(uint32_t segment) const;
  // Takes the lowest free segment for chunk data. ENOSPC when none is free
  // beyond `keep_free` (a reserve for metadata growth).
  Result<uint32_t> AcquireDataSegment(uint64_t keep_free);
  // Gives a data segment back (its chunks are gone, durably).
  Status ReleaseDataSegment(uint32_t segment);
  // Records a free segment as data again (a lost ownership record: the
  // chunk index still points into it). EEXIST when it holds metadata.
  Status ClaimDataSegment(uint32_t segment);
  // Segments added at the end of a grown device; free. The superblock that
  // counts them must be durable first.
  Status Grow(uint64_t segment_count);
  // Discards metadata segments as they are given back. Default off.
  void set_discard(bool discard) { discard_ = discard; }
  // Returns all free space to the device: every free segment and every
  // free block run in metadata segments. Returns the bytes discarded.
  Result<uint64_t> TrimFree();
  MetaFsUsage Usage() const;
  // What a Damage::kRollBack mount rolled back (empty when nothing was).
  const std::string& rolled_back() const { return rolled_back_; }
  // What replay found of the journal's two copies. Only records a sync made
  // durable (those the root counts) are counted: past them one copy may
  // lack a record because the power went while it was written.
  struct JournalCopies {
    bool mirrored = false;              // the replayed journal had two copies
    uint64_t primary_damaged = 0;       // records read from the mirror: the primary's did not verify
    uint64_t mirror_damaged = 0;        // records whose mirror copy did not verify (or differed)
    bool rewritten = false;             // a read-write mount wrote both copies afresh since
    uint64_t damaged() const { return primary_damaged + mirror_damaged; }
  };
  // Set by the mount, never changed after it.
  const JournalCopies& journal_copies() const { return copies_; }
  // Blocks of metadata files found bad in one copy and read from the other
  // (by reads, and by ScrubFiles).
  struct FileCopies {
    uint64_t primary_damaged = 0;  // blocks whose primary copy did not verify; the mirror's did
    uint64_t mirror_damaged = 0;   // blocks whose mirror copy did not verify; the primary's did
    uint64_t both_damaged = 0;     // blocks that verify in neither copy (their reads fail with EIO)
    uint64_t repaired = 0;         // bad copies rewritten from the good one
  };
  // Reads every block of every file in both copies and checks it against its
  // checksum; with `repair` (not read-only), rewrites each bad copy from the
  // good one and syncs. Also counts what reads found since the mount.
  Result<FileCopies> ScrubFiles(bool repair);
  // Blocks reads have taken from the mirror since the mount.
  uint64_t mirror_reads() const { return mirror_reads_.load(); }
  uint64_t segment_count() const;
  // Every segment's use (for check).
  std::vector<SegmentUse> SegmentUses() const;

  // --- files (flat names, as RocksDB uses them)
  class File;
  // Opens `name` for appending, creating it or emptying it first.
  Result<std::shared_ptr<File>> Create(const std::string& name);
  // Opens an existing file for reading or appending.
  Result<std::shared_ptr<File>> Open(const std::string& name);
  bool Exists(const std::string& name) const;
  Result<uint64_t> FileSize(const std::string& name) const;
  std::vector<std::string> List(const std::string& prefix) const;
  Status Delete(const std::string& name);
  // Replaces `to` if it exists.
  Status Rename(const std::string& from, const std::string& to);
  Status Truncate(const std::string& name, uint64_t size);
  // Makes everything written so far durable.
  Status Sync();

  // Device extents of every file and of the journal (for check).
  struct Extent {
    uint64_t offset;
    uint64_t length;
  };
  std::map<std::string, std::vector<Extent>> FileExtents() const;
  // Each file's mirror extents, one per extent at the same index; length 0
  // where an extent has no mirror (written before mirroring).
  std::map<std::string, std::vector<Extent>> FileMirrorExtents() const;
  std::vector<Extent> JournalExtents() const;
  // The mirror copy's extents, one per journal extent at the same index
  // (empty for a journal with one copy: read-only on a volume from before
  // mirroring).
  std::vector<Extent> JournalMirrorExtents() const;

 private:
  struct FileState;
  MetaFs(Device* device, const MetaFsLayout& layout);

  Status Replay(bool read_only, bool roll_back);
  Status StartJournal(uint64_t generation);
  // Appends one record to the journal (mu_ held).
  Status Journal(uint8_t type, const std::string& payload);
  // Writes the journal's current block (tail_) to both copies.
  Status WriteTail();
  // A new extent of `blocks` for the journal, and its mirror in another segment.
  Result<std::pair<Extent, Extent>> AllocateJournalExtent(uint64_t blocks, uint64_t near);
  // A new extent and its mirror in another segment (for files and the journal).
  Result<std::pair<Extent, Extent>> AllocatePair(uint64_t blocks, uint64_t near, uint64_t mirror_near);
  // Journals the checksums of blocks [first, first + count) of a file (mu_ held).
  Status JournalSums(const FileState& f, uint64_t first, uint64_t count);
  // Reads [offset, offset + out.size()) of a file, verifying each block and
  // falling back to its mirror. mu_ not held.
  Status ReadFile(const std::shared_ptr<FileState>& f, uint64_t offset, std::span<std::byte> out) const;
  // What a read of a file needs, copied under mu_ (a read runs without it).
  struct FileView;
  FileView ViewOf(const FileState& f, uint64_t offset, uint64_t length) const;  // mu_ held
  Status ReadView(const FileView& v, uint64_t offset, std::span<std::byte> out) const;
  // Rewrites the copy of each block past `settled` that does not verify
  // from the one that does (mu_ held; at a read-write mount).
  Status CopyUnsettled(const FileState& f);
  Status MaybeCompact();
  // Allocation of 4 KiB blocks in metadata segments (mu_ held), never in
  // segment `avoid` (-1: anywhere).
  Result<Extent> AllocateBlocks(uint64_t blocks, uint64_t near, int64_t avoid = -1);
  void FreeExtent(const Extent& e);
  void MarkUsed(const Extent& e);
  Status SetUse(uint32_t segment, SegmentUse use);
  void CountUse(SegmentUse from, SegmentUse to);
  void RecountUse();
  Result<uint32_t> TakeFreeSegment();
  void ReleaseEmptyMetaSegments();
  void DropFile(uint64_t id);  // mu_ held: frees its blocks once unused
  // Writes the next root (alternating slots; not synced). `mirror` is the
  // offset of the first extent's mirror.
  Status WriteRoot(uint64_t generation, const Extent& first, uint64_t mirror, uint64_t synced_records);

  friend class File;
  Device* const device_;
  MetaFsLayout layout_;

  // Guards everything below. Lock order: File::mu_, then mu_.
  mutable std::mutex mu_;
  std::vector<SegmentUse> use_;
  int64_t free_segments_ = 0;
  int64_t meta_segments_ = 0;
  uint32_t free_hint_ = 0;
  struct MetaSegment {
    std::vector<uint64_t> bits;  // 1 = block used
    uint64_t used = 0;
  };
  std::map<uint32_t, MetaSegment> meta_;
  std::vector<Extent> pending_free_;  // freed since the last sync
  std::map<std::string, uint64_t> names_;
  std::unordered_map<uint64_t, std::shared_ptr<FileState>> files_;
  uint64_t next_id_ = 1;

  // The journal.
  uint64_t generation_ = 0;
  std::vector<Extent> journal_;  // extents of the current generation
  std::vector<Extent> mirror_;   // their mirrors, index for index (empty: one copy)
  uint64_t journal_pos_ = 0;     // device offset of the next record
  uint64_t journal_end_ = 0;     // end of the current extent
  uint64_t journal_bytes_ = 0;
  uint64_t journal_records_ = 0;  // records of the current generation so far
  uint64_t root_sequence_ = 0;    // of the last root written
  uint64_t root_synced_ = 0;      // records the last root says a sync covered
  std::string rolled_back_;       // set once by Replay
  JournalCopies copies_;          // set once by Replay and the mount's new generation
  std::string tail_;             // bytes of the journal's current block, before journal_pos_
  uint64_t tail_offset_ = 0;     // device offset of tail_[0] (block aligned)
  bool compacting_ = false;
  bool read_only_ = false;
  std::atomic<bool> discard_{false};
  mutable std::atomic<uint64_t> mirror_reads_{0};   // blocks read from the mirror
  mutable std::atomic<uint64_t> unreadable_reads_{0};  // blocks bad in both copies, as reads found them
};

// An open metadata file: appended to by one writer, read by any.
class MetaFs::File {
 public:
  ~File();
  uint64_t size() const;
  // Appends (buffered; Flush writes the buffer to the device).
  Status Append(std::span<const std::byte> data);
  Status Flush();
  // Flush, journal the new size, and make both durable.
  Status Sync();
  // Reads up to out.size() bytes at `offset`; returns the count (short at the end).
  Result<size_t> Read(uint64_t offset, std::span<std::byte> out) const;

 private:
  friend class MetaFs;
  File(MetaFs* fs, std::shared_ptr<FileState> state) : fs_(fs), state_(std::move(state)) {}
  Status WriteOut();

  MetaFs* fs_;
  std::shared_ptr<FileState> state_;
  mutable std::mutex mu_;  // guards buffer_
  std::string buffer_;     // appended, not yet on the device
};

}  // namespace qcfs
