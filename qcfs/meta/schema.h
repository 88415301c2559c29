// The metadata schema: every key QCFS keeps in RocksDB and the encoding of
// its value. docs/design.md describes the same in prose; keep them in step.
//
// Keys start with one byte naming the record type; integers in keys are
// big-endian so that bytewise order is numeric order:
//
//   S name                 system records (superblock copy, counters, stats)
//   I ino                  inode
//   D parent name          directory entry
//   E ino index            extent: chunk `index` of file `ino` -> fingerprint
//   X ino name             extended attribute
//   O ino                  orphan: nlink 0, data kept until the last close
//   C fingerprint          chunk index: location, sizes, reference count
//   G segment              segment usage: live bytes
//   L segment offset pos   location -> fingerprint (what the cleaner moves);
//                          pos is the chunk's offset inside a pack, else 0
//   P id                   snapshot
//   H key 0 ~epoch         history: a version of a versioned key that a
//                          snapshot still sees (key as above, then a zero
//                          byte, then its epoch inverted, newest first)
//   J epoch key            journal: `key` changed during `epoch`
//
// Versioned records (I, D, E, X) begin with the epoch in which they were
// written, so that snapshots can keep the versions they need
// (docs/design.md, "Snapshots").
//
// Decoders return false on malformed input; they never read out of bounds.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "qcfs/core/fingerprint.h"

namespace qcfs::schema {

inline constexpr char kSystemPrefix = 'S';
inline constexpr char kInodePrefix = 'I';
inline constexpr char kDirentPrefix = 'D';
inline constexpr char kExtentPrefix = 'E';
inline constexpr char kXattrPrefix = 'X';
inline constexpr char kOrphanPrefix = 'O';
inline constexpr char kChunkPrefix = 'C';
inline constexpr char kSegmentPrefix = 'G';
inline constexpr char kLocationPrefix = 'L';
inline constexpr char kSnapshotPrefix = 'P';
inline constexpr char kHistoryPrefix = 'H';
inline constexpr char kJournalPrefix = 'J';

// System record names.
inline constexpr std::string_view kVolumeStateName = "volume";     // VolumeState
inline constexpr std::string_view kStatsName = "stats";            // StoreStats
inline constexpr std::string_view kPendingName = "pending";        // PendingOp

std::string SystemKey(std::string_view name);
std::string InodeKey(uint64_t ino);
std::string DirentPrefix(uint64_t parent);
std::string DirentKey(uint64_t parent, std::string_view name);
std::string ExtentPrefix(uint64_t ino);
std::string ExtentKey(uint64_t ino, uint64_t index);
std::string XattrPrefix(uint64_t ino);
std::string XattrKey(uint64_t ino, std::string_view name);
std::string OrphanKey(uint64_t ino);
std::string ChunkKey(const Fingerprint& fp);
std::string SegmentKey(uint32_t segment);
std::string LocationPrefix(uint32_t segment);
std::string LocationKey(uint32_t segment, uint32_t offset, uint32_t pack_offset);

std::string SnapshotKey(uint64_t id);
// History of `key`: all versions share HistoryPrefix(key); HistoryKey adds
// the version's epoch. Seeking HistoryKey(key, e) finds the newest version
// born at or before e.
std::string HistoryPrefix(std::string_view key);
std::string HistoryKey(std::string_view key, uint64_t epoch);
// Splits a history key into the versioned key and the epoch.
bool ParseHistoryKey(std::string_view hkey, std::string_view* key, uint64_t* epoch);
std::string JournalPrefix(uint64_t epoch);
std::string JournalKey(uint64_t epoch, std::string_view key);

// The epoch a versioned value was written in (its first varint).
bool ValueEpoch(std::string_view value, uint64_t* epoch);

// Parsers for keys found while iterating a prefix (the part after it).
bool ParseU64Suffix(std::string_view suffix, uint64_t* value);
bool ParseU32Suffix(std::string_view suffix, uint32_t* value);

struct InodeRecord {
  uint64_t epoch = 0;  // epoch in which this version was written
  uint32_t mode = 0;   // S_IFMT type and permission bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint64_t size = 0;  // bytes; for directories the number of entries
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  int64_t btime_ns = 0;  // creation time
  uint64_t rdev = 0;
  uint64_t parent = 0;  // the directory holding the inode's primary name (0: unknown)
  uint64_t chunks = 0;  // regular files: extents (non-hole chunks) stored
  std::string symlink;  // symlinks: the target
  std::string name;     // the primary name (for paths in diffs; "" when unknown)
  uint32_t flags = 0;   // kInode* bits below

  // Set in the batch that stores the inode's first extended attribute and
  // never cleared while the inode lives: without it, removing the inode
  // skips the walk over its attributes. Records written before the flag
  // existed (format 1) read with it set.
  static constexpr uint32_t kInodeMayHaveXattrs = 1u << 0;

  void EncodeTo(std::string* out) const;
  static bool Decode(std::string_view in, InodeRecord* out);
};

struct DirentRecord {
  uint64_t epoch = 0;
  uint64_t ino = 0;
  uint8_t type = 0;  // DT_REG, DT_DIR, ... (from <dirent.h>)

  void EncodeTo(std::string* out) const;
  static bool Decode(std::string_view in, DirentRecord* out);
};

struct ExtentRecord {
  uint64_t epoch = 0;
  Fingerprint fp;
  uint32_t raw_len = 0;  // content bytes of the chunk

  void EncodeTo(std::string* out) const;
  static bool Decode(std::string_view in, ExtentRecord* out);
};

struct XattrRecord {
  uint64_t epoch = 0;
  std::string value;

  void EncodeTo(std::string* out) const;
  static bool Decode(std::string_view in, XattrRecord* out);
};

// Where a chunk lives and how many extents reference it. A chunk is stored
// in a record of its own, or as a member of a pack: a record holding several
// small chunks compressed together.
struct ChunkIndexRecord {
  uint32_t segment = 0;
  uint32_t offset = 0;      // byte offset of the record within the segment
  uint32_t record_len = 0;  // bytes of the whole record on the device
  uint32_t raw_len = 0;     // bytes of this chunk's content (trailing zeros trimmed)
  uint8_t codec = 0;        // store/codec.h Codec of the record's payload
  uint64_t refcount = 0;
  uint32_t pack_offset = 0;  // packs: where the content starts in the decompressed payload
  uint32_t pack_raw = 0;     // packs: decompressed payload length; 0 for a record of its own
  uint32_t share = 0;        // bytes of the record charged to this chunk (space accounting)

  bool packed() const { return pack_raw != 0; }
  void EncodeTo(std::string* out) const;
  static bool Decode(std::string_view in, ChunkIndexRecord* out);
};

struct SegmentRecord {
  uint64_t live_bytes = 0;  // bytes of live chunk records (header + payload)

  void EncodeTo(std::string* out) const;
  static bool Decode(std::string_view in, SegmentRecord* out);
};

// Counters of the namespace, persisted with each operation that changes them.
struct VolumeState {
  uint64_t next_ino = 0;       // inode numbers below this may be in use
  uint64_t current_epoch = 1;  // epoch of new versions; snapshots advance it
  uint64_t clean_unmount = 0;  // 1 after a clean unmount, 0 while mounted
  uint64_t inodes = 0;         // inodes of every type, the root included
  uint64_t next_snapshot = 1;  // snapshot ids are never reused

  void EncodeTo(std::string* out) const;
  static bool Decode(std::string_view in, VolumeState* out);
};

// Space accounting of the chunk store, kept exact by every batch.
struct StoreStats {
  uint64_t chunks = 0;            // distinct chunks stored
  uint64_t unique_bytes = 0;      // sum of raw_len over chunks
  uint64_t stored_bytes = 0;      // sum of shares over chunks: bytes of live records
  uint64_t referenced_bytes = 0;  // sum of raw_len x refcount: logical data, snapshots included
  uint64_t history_bytes = 0;     // the part of referenced_bytes held only by kept versions

  void EncodeTo(std::string* out) const;
  static bool Decode(std::string_view in, StoreStats* out);
  friend bool operator==(const StoreStats&, const StoreStats&) = default;
};

// The value of a history key: when the version stopped being live, and the
// version itself (a value as the live key held it).
void EncodeHistory(uint64_t died, std::string_view value, std::string* out);
bool DecodeHistory(std::string_view in, uint64_t* died, std::string_view* value);

// A snapshot: the tree as it was at the end of `epoch`.
struct SnapshotRecord {
  std::string name;
  uint64_t epoch = 0;
  int64_t created_ns = 0;
  uint64_t logical_bytes = 0;  // bytes the live files held when it was taken
  uint64_t files = 0;          // inodes then
  uint8_t state = 0;           // 0 active, 1 being deleted

  void EncodeTo(std::string* out) const;
  static bool Decode(std::string_view in, SnapshotRecord* out);
};

// A snapshot operation that must finish after a crash (delete, restore).
struct PendingOp {
  uint8_t kind = 0;        // 1 delete, 2 restore
  uint64_t snapshot = 0;   // id of the snapshot deleted or restored
  uint64_t from = 0;       // journal epochs (from, to] to walk
  uint64_t to = 0;
  uint64_t previous = 0;   // delete: epoch of the previous snapshot, 0 if none

  void EncodeTo(std::string* out) const;
  static bool Decode(std::string_view in, PendingOp* out);
};

}  // namespace qcfs::schema
