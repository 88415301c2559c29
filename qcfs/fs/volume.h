// Volume: POSIX filesystem semantics over the metadata database and the
// chunk store, usable without FUSE (the FUSE adapter is a thin layer on it).
//
// Inode numbers are 64-bit and never reused; the root is inode 1. Every
// namespace operation commits as one atomic metadata batch. File data is
// buffered per file in chunk-sized buffers and flushed as whole chunks on
// fsync, on the last close, under memory pressure, or after at most
// `flush_interval_ms`: hashing and compression run on a worker pool, the
// chunk data is made durable, then one batch updates extents, inode and
// reference counts. Buffered data is bounded by `cache_bytes`: writers wait
// (backpressure) while the flusher drains. fsync makes the file's data and
// metadata durable; Sync() makes everything durable.
//
// Errors are Status values carrying an errno (ENOENT, EEXIST, ENOTEMPTY,
// ENOSPC, EIO, ...). A damaged chunk reads as EIO, never as wrong bytes.
//
// Thread-safety: every method may be called from any thread concurrently.
// Lock order: ns_mu_ -> Inode::flush_mu -> inode stripe locks (ascending)
// -> the chunk store's locks.
#pragma once

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "qcfs/core/status.h"
#include "qcfs/core/thread_pool.h"
#include "qcfs/io/device.h"
#include "qcfs/meta/meta_db.h"
#include "qcfs/meta/metafs.h"
#include "qcfs/meta/schema.h"
#include "qcfs/store/chunk_store.h"
#include "qcfs/store/superblock.h"
#include "qcfs/fs/internal/versioned.h"

namespace qcfs {

inline constexpr uint64_t kRootIno = 1;

// Snapshots are browsable read-only under ROOT/.snapshots/NAME. Their inodes
// carry the snapshot id in the top 16 bits: ViewIno(id, ino). Live inode
// numbers stay below 2^48.
inline constexpr int kViewShift = 48;
inline constexpr uint64_t kLiveInoLimit = 1ull << kViewShift;
inline constexpr uint64_t kSnapshotsDirIno = (0xffffull << kViewShift) | 1;  // .snapshots itself
inline constexpr std::string_view kSnapshotsDirName = ".snapshots";
inline constexpr uint64_t ViewIno(uint64_t snapshot, uint64_t ino) { return (snapshot << kViewShift) | ino; }
inline constexpr size_t kMaxNameLength = 255;
inline constexpr size_t kMaxSymlinkLength = 4095;
inline constexpr size_t kMaxXattrValue = 65536;

enum class AtimeMode { kNoatime, kRelatime, kStrictatime };

struct VolumeOptions {
  bool read_only = false;
  // Offline maintenance (qcfs check --repair): the database is writable but
  // the volume itself does nothing on its own: no recovery of orphans, no
  // background flusher, nothing written at Close().
  bool maintenance = false;
  // Compression of new chunks; unset means the volume's default (mkfs).
  std::optional<CompressionSpec> compression;
  // Memory for data, in all (default 256 MiB): half for buffered writes,
  // an eighth for the flush pipeline, a sixteenth each for the chunk read
  // cache and the metadata block cache, three thirty-seconds for metadata
  // memtables. The daemon's resident size stays near this whatever it writes.
  uint64_t cache_bytes = 256ull << 20;
  // Buffered data is flushed at most this long after it was written. Default 5 s.
  uint32_t flush_interval_ms = 5000;
  AtimeMode atime = AtimeMode::kRelatime;
  // Hashing and compression threads; 0 means one per CPU.
  size_t worker_threads = 0;
  StoreOptions store;
  MetaOptions meta;
  // Called (from an internal thread or the calling thread, never with a
  // Volume lock held) when the volume changed an inode's attributes on its
  // own, so that a kernel cache can be invalidated.
  std::function<void(uint64_t ino)> on_attr_changed;
  // Likewise when written data of `ino` was lost (it could not be stored):
  // a kernel cache must drop its copy of the file's pages, so that readers
  // get the volume's EIO instead of bytes that were never stored.
  std::function<void(uint64_t ino)> on_data_lost;
  // Likewise when a restore or a snapshot change replaced an inode's data
  // and attributes, or a directory entry.
  std::function<void(uint64_t ino)> on_inode_replaced;
  std::function<void(uint64_t parent, const std::string& name)> on_entry_changed;
  // List .snapshots in the root directory (it is always reachable by name).
  bool snapdir_visible = false;
};

struct MkfsOptions {
  uint64_t size = 0;  // image size in bytes; 0 keeps the size of an existing file or device
  uint32_t chunk_size = 64 << 10;
  uint32_t segment_size = 0;  // 0: max(4 MiB, 4 x chunk_size)
  CompressionSpec compression;
  // Overwrite a device that holds a file system or partition table.
  bool force = false;
};

// Who performs an operation (for ownership of new inodes and the rules of
// setting an access ACL).
struct Caller {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups; empty when not known
  // The creating process's umask. A new inode's mode is masked with it
  // unless its directory has a default ACL, which then decides instead
  // (POSIX.1e). 0 where the caller applied it already.
  uint32_t umask = 0;
};

struct Attr {
  uint64_t ino = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t rdev = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte units
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  int64_t btime_ns = 0;

  struct stat ToStat() const;
};

// Which attributes SetAttr changes.
struct SetAttrRequest {
  std::optional<uint32_t> mode;  // permission bits (S_IFMT bits are ignored)
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;
  std::optional<int64_t> atime_ns;  // use kNow for the current time
  std::optional<int64_t> mtime_ns;
  std::optional<int64_t> ctime_ns;
  static constexpr int64_t kNow = INT64_MIN;
};

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  uint8_t type = 0;  // DT_*
};

// What `qcfs info` shows.
struct VolumeInfo {
  std::string device;
  std::string uuid;
  uint64_t device_bytes = 0;  // of the device, that the volume spans
  uint32_t chunk_size = 0;
  std::string compression;
  StoreUsage usage;
  uint64_t files = 0;        // inodes of every type
  uint64_t dirty_bytes = 0;  // buffered, not yet flushed
  uint64_t meta_bytes = 0;     // size of the metadata database's files
  uint64_t meta_segments = 0;  // segments holding metadata
  uint64_t snapshots = 0;
};

struct TrimResult {
  uint64_t trimmed_bytes = 0;     // free space handed back to the device
  uint64_t segments_cleaned = 0;  // partly used segments compacted first
};

struct ResizeResult {
  uint64_t old_bytes = 0;  // device bytes the volume spanned
  uint64_t new_bytes = 0;
  uint64_t old_segments = 0;
  uint64_t new_segments = 0;
};

// An online scrub: every stored chunk read back and verified.
struct ScrubStatus {
  enum class State { kIdle, kRunning, kDone, kCancelled, kFailed };
  State state = State::kIdle;
  bool full = false;  // also the SHA-256 of each chunk's content
  uint64_t chunks_total = 0;
  uint64_t chunks_done = 0;
  uint64_t bytes_done = 0;  // stored bytes read
  int64_t started_ns = 0;
  int64_t finished_ns = 0;
  std::string error;  // kFailed: why
  struct Damage {
    std::string chunk;   // fingerprint, hex
    std::string detail;  // what is wrong
    std::vector<std::string> paths;  // live files holding it ("" when only snapshots do)
  };
  std::vector<Damage> damaged;
};

struct SnapshotInfo {
  uint64_t id = 0;
  std::string name;
  uint64_t epoch = 0;
  int64_t created_ns = 0;
  uint64_t logical_bytes = 0;  // bytes the live files held when it was taken
  uint64_t files = 0;          // inodes then
  // Stored bytes that deleting it would free (only when asked for: it walks
  // the changes between it and its neighbours).
  std::optional<uint64_t> exclusive_bytes;
};

// What changed between two points in time: a snapshot and a later one, or
// the live tree. Inode-level changes are what incremental backups stream;
// `entries` is the same rendered as paths.
struct SnapshotDiff {
  struct InodeChange {
    uint64_t ino = 0;
    bool existed_before = false;
    bool exists_after = false;
    bool metadata = false;              // attributes or extended attributes
    std::vector<uint64_t> chunks;       // chunk indexes whose content changed
    uint64_t size_before = 0;
    uint64_t size_after = 0;
  };
  struct Entry {
    enum class Kind { kAdded, kDeleted, kModified, kRenamed };
    Kind kind = Kind::kModified;
    std::string path;      // after (before, for deleted)
    std::string old_path;  // renamed: the path before
    uint64_t ino = 0;
    uint32_t mode = 0;
    bool data = false;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;  // changed bytes [start, end)
  };
  std::string from;  // snapshot names; to == "" is the live tree
  std::string to;
  std::vector<InodeChange> inodes;
  std::vector<Entry> entries;
  uint64_t journal_keys = 0;  // changed keys examined (the work done)
};

// Names a snapshot may have: 1-255 bytes, no '/', not "." or "..".
Status ValidateSnapshotName(std::string_view name);

// Where MetaFs finds its roots and segments on a device with this superblock.
MetaFsLayout LayoutFor(const Superblock& sb);

// Formats a device (an image file is created, sparse, when `size` is set).
Status Mkfs(const std::string& device_path, const MkfsOptions& options);
// Formats an open device (options.size and force do not apply).
Status MkfsOn(Device* device, const MkfsOptions& options);

namespace internal {
class VersionedBatch;
struct Epochs;
struct Inode;
class ChunkBuf;
struct FlushItem;
}  // namespace internal

class Volume {
 public:
  static Result<std::unique_ptr<Volume>> Open(const std::string& device_path, const VolumeOptions& options);
  // The same on a device already open (tests use an in-memory one).
  static Result<std::unique_ptr<Volume>> OpenOn(std::unique_ptr<Device> device, const VolumeOptions& options);
  Volume(const Volume&) = delete;
  Volume& operator=(const Volume&) = delete;
  // Flushes and closes (see Close()).
  ~Volume();

  // Flushes every buffer, marks the volume clean and closes the database.
  Status Close();

  // --- namespace
  Result<Attr> Lookup(uint64_t parent, std::string_view name);
  Result<Attr> GetAttr(uint64_t ino);
  Result<Attr> SetAttr(uint64_t ino, const SetAttrRequest& req);
  Result<Attr> Mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev, const Caller& caller);
  Result<Attr> Mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Caller& caller);
  Result<Attr> Symlink(uint64_t parent, std::string_view name, std::string_view target, const Caller& caller);
  Result<Attr> Link(uint64_t ino, uint64_t new_parent, std::string_view new_name);
  Status Unlink(uint64_t parent, std::string_view name);
  Status Rmdir(uint64_t parent, std::string_view name);
  // flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE.
  Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                unsigned flags);
  Result<std::string> Readlink(uint64_t ino);

  // Calls fn for the entries of a directory after `after` (in name order;
  // "" starts at the first) until fn returns false. "." and ".." are not
  // included.
  Status ReadDir(uint64_t ino, std::string_view after, const std::function<bool(const DirEntry&)>& fn);

  // --- files. Open/Create count an open handle; Release ends it.
  Result<Attr> Open(uint64_t ino, int flags);
  Result<Attr> Create(uint64_t parent, std::string_view name, uint32_t mode, int flags, const Caller& caller);
  Status Release(uint64_t ino);
  // Reads up to out.size() bytes at `offset`; returns the count (short at EOF).
  Result<size_t> Read(uint64_t ino, uint64_t offset, std::span<std::byte> out);
  // Writes at `offset` (at the end of the file when `append`); returns the
  // count. `cached`: the caller is a write-back cache (the kernel's) that
  // keeps mtime and ctime and sets them itself, and whose writer was told
  // long ago that this write succeeded: what cannot be buffered for want of
  // space is then marked lost (reads give EIO, no durable size covers it,
  // the next fsync or close reports it) instead of merely refused.
  Result<size_t> Write(uint64_t ino, uint64_t offset, std::span<const std::byte> data, bool append = false,
                       bool cached = false);
  // Makes the file's data and metadata durable. Reports a deferred write error.
  Status Fsync(uint64_t ino, bool datasync);
  // close(2) of one descriptor: reports a deferred write error, starts a flush.
  Status FlushHandle(uint64_t ino);
  // mode: 0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE|KEEP_SIZE, FALLOC_FL_ZERO_RANGE.
  Status Fallocate(uint64_t ino, int mode, uint64_t offset, uint64_t length);

  // --- extended attributes. flags: 0, XATTR_CREATE or XATTR_REPLACE.
  // POSIX ACLs follow the kernel's rules (fs/posix_acl.c); the Volume keeps
  // them consistent with the mode, and whoever checks permissions (the
  // kernel, through FUSE) reads them from system.posix_acl_access:
  //  - only the owner (or root) may set an ACL; EINVAL for a malformed one;
  //  - system.posix_acl_access sets the mode's permission bits (the group
  //    bits from the mask) and drops set-group-ID for a caller outside the
  //    file's group; one the mode expresses in full (owner, group and other
  //    only) is not stored;
  //  - system.posix_acl_default is for directories only (EACCES elsewhere);
  //    a new inode in such a directory gets it as its access ACL, masked by
  //    the mode asked for, instead of the umask, and a new directory also
  //    inherits it as its own default ACL (symlinks get neither);
  //  - chmod (SetAttr with a mode) rewrites a stored access ACL's owner,
  //    mask (or group, without a mask) and other entries.
  Status SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags,
                  const Caller& caller = Caller{});
  Result<std::string> GetXattr(uint64_t ino, std::string_view name);
  Result<std::vector<std::string>> ListXattr(uint64_t ino);
  Status RemoveXattr(uint64_t ino, std::string_view name);

  // --- snapshots
  // Flushes buffered data, then records the tree as it is: O(1).
  Result<SnapshotInfo> CreateSnapshot(std::string_view name);
  Result<std::vector<SnapshotInfo>> ListSnapshots(bool with_exclusive);
  // Frees what only this snapshot holds; cost in proportion to what changed
  // between it and its neighbours.
  Status DeleteSnapshot(std::string_view name);
  // Rolls the live tree back to the snapshot after taking an automatic
  // snapshot of it (whose name is returned). Open files keep working on the
  // restored content; those that did not exist in the snapshot go stale
  // (ESTALE). Buffered data is flushed into the automatic snapshot first.
  Result<std::string> RestoreSnapshot(std::string_view name);
  // Changes from snapshot `from` to snapshot `to` ("" = the live tree).
  Result<SnapshotDiff> Diff(std::string_view from, std::string_view to);

  // --- whole volume
  Result<struct statvfs> StatFs();
  // Bytes new data may still take (after what buffered writes reserved).
  uint64_t AvailableBytes() const;
  // Flushes all buffered data and makes all metadata durable.
  Status Sync();
  Result<VolumeInfo> Info();
  // Compacts partly used segments and returns every free byte to the device
  // (punched holes in an image file, BLKDISCARD on a block device).
  Result<TrimResult> Trim();
  // Grows the volume to span `size` bytes of its device, or all of it with
  // 0 (after the partition beneath grew, or the image file was extended).
  // An image file is extended to `size`. Works mounted or not.
  Result<ResizeResult> Resize(uint64_t size);
  // Starts reading back and verifying every stored chunk in the
  // background while the volume serves (EBUSY if one is running). Damaged
  // chunks are reported with the paths of the files that hold them.
  Status StartScrub(bool full);
  ScrubStatus scrub_status() const;
  void CancelScrub();
  bool read_only() const { return options_.read_only; }
  Superblock superblock() const;
  ChunkStore* store() { return store_.get(); }
  MetaFs* space() { return space_.get(); }
  MetaDb* db() { return db_.get(); }
  // Testing: runs on the commit thread before each flush round commits, so
  // a test can change the volume between a round's preparation and its
  // commit. Set it before the flush it is meant for; not thread-safe.
  void SetCommitHookForTesting(std::function<void()> hook) { commit_hook_ = std::move(hook); }
  // Runs in a write's read-modify-write of a stored chunk, after the chunk is
  // read and before the inode's lock is taken again.
  void SetModifyHookForTesting(std::function<void()> hook) { modify_hook_ = std::move(hook); }

 private:
  Volume(std::unique_ptr<Device> device, std::unique_ptr<MetaFs> space, std::unique_ptr<MetaDb> db,
         const Superblock& sb, const VolumeOptions& options);
  Status Start();

  using InodeRef = std::shared_ptr<internal::Inode>;

  // Inode records.
  Result<schema::InodeRecord> LoadRecord(uint64_t ino);
  // The in-memory state of an inode, created from its record when needed.
  Result<InodeRef> Acquire(uint64_t ino);
  InodeRef FindState(uint64_t ino);
  void MaybeDropState(const InodeRef& inode);
  // Keeps `rec` as the open regular file's new record, to be written with
  // its next flush (last close, fsync, sync, or the flush interval) like
  // the times its writes change; false (nothing done) when `state` is not
  // such a file. REQUIRES: the inode's stripe lock.
  bool DeferRecord(const InodeRef& state, const schema::InodeRecord& rec);
  Attr ToAttr(uint64_t ino, const schema::InodeRecord& rec, const internal::Inode* state) const;
  // Writes (a version of) an inode, stamped with the batch's epoch.
  Status PutInode(internal::VersionedBatch* vb, uint64_t ino, const schema::InodeRecord& rec);
  Status PutDirent(internal::VersionedBatch* vb, uint64_t parent, std::string_view name, uint64_t ino, uint32_t mode);
  // Holds off snapshot creation while a commit is built and written.
  struct CommitScope {
    std::shared_lock<std::shared_mutex> lock;
    internal::Epochs epochs;
  };
  CommitScope BeginCommit();
  std::mutex& StripeFor(uint64_t ino) { return stripes_[ino % kStripes]; }
  std::vector<std::unique_lock<std::mutex>> LockInodes(std::vector<uint64_t> inos);

  Status CheckWritable() const;
  Result<schema::DirentRecord> LookupDirent(uint64_t parent, std::string_view name);
  Result<Attr> CreateNode(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
                          std::string_view symlink, const Caller& caller, bool open);
  // Whether the inode's record says it may hold extended attributes (a new
  // file's security.capability lookup then needs no read); ENOENT when the
  // inode does not exist.
  Result<bool> MayHaveXattrs(uint64_t ino);
  // The extents of a regular file whose few chunk slots are all stored
  // (rec.chunks says so), read by key; nullopt when the file is sparse,
  // large, or its count does not match what is stored: walk the prefix then.
  Result<std::optional<std::vector<std::pair<std::string, std::string>>>> DenseExtents(
      uint64_t ino, const schema::InodeRecord& rec);
  // Drops the link (parent, name) of `ino`, adding the changes to `vb`, and
  // writes the batch; the last link of a closed inode deletes it, data
  // included, in the same batch. REQUIRES: ns_mu_, the inode's stripe and a
  // commit scope are held.
  Status DropLink(internal::VersionedBatch* vb, uint64_t ino, schema::InodeRecord* rec, int64_t now,
                  std::string_view name, uint64_t parent);
  // Deletes an inode whose last link and handle are gone.
  Status Purge(uint64_t ino);
  Status PurgeOrphans();
  Status WriteBatch(rocksdb::WriteBatch* batch, bool sync = false);
  void PutVolumeState(rocksdb::WriteBatch* batch);

  // Data path (file_data.cc).
  // The dirty buffer of chunk `index`, created (from the stored chunk unless
  // `overwrite`: the caller writes all of it) when there is none. May drop
  // and retake `stripe`.
  Result<std::shared_ptr<internal::ChunkBuf>> DirtyBufferFor(const InodeRef& inode, uint64_t index,
                                                             std::unique_lock<std::mutex>* stripe, bool overwrite);
  Status ReserveBuffer();
  void ReleaseBuffer(size_t count);
  // Flushes every chunk of `inodes` written so far.
  Status FlushInodes(std::vector<InodeRef> inodes);
  // Flushes the chunks of `inodes` written up to write sequence `upto`, in
  // rounds of at most round_bytes_. REQUIRES: every inode's flush_mu is held.
  Status FlushLocked(const std::vector<InodeRef>& inodes, uint64_t upto);
  // The size a flush may make durable for `inode` given the chunks it
  // leaves dirty: never beyond a byte that is neither stored nor in the
  // flush. REQUIRES: the inode's stripe lock.
  uint64_t DurableSizeWithout(const internal::Inode& inode) const;
  // Marks chunks [from_index, the chunk holding byte end - 1] lost for `why`:
  // a write the kernel's cache had acknowledged could not be buffered.
  // REQUIRES: the inode's stripe lock.
  void MarkLost(internal::Inode* inode, uint64_t from_index, uint64_t end, const Status& why);
  // The error (`code`) for a read or write of a chunk whose data a failed
  // flush lost.
  Status LostChunk(const internal::Inode& inode, uint64_t index, int code = EIO) const;
  // Prepares one round: takes chunks, hashes and compresses what is new.
  // Sets *more when chunks up to `upto` are left. What it took (even on
  // failure, which it returns) goes to CommitFlush.
  Status FlushRound(const std::vector<InodeRef>& inodes, uint64_t upto, bool* more,
                    std::vector<internal::FlushItem>* items, std::vector<EncodedRecord>* records);
  // Writes a prepared round's new records and syncs them (unless `prepared`
  // failed: returns that).
  Status WriteFlush(const std::vector<EncodedRecord>& records, Status prepared);
  // Commits each file's extents of a round whose records WriteFlush wrote,
  // or records the failure (`written`) as the files' write error; then
  // forgets the provisional chunks the write made.
  Status CommitFlush(std::vector<internal::FlushItem>& items, const std::vector<EncodedRecord>& records,
                     Status written);
  Status Truncate(const InodeRef& inode, uint64_t size, int64_t now);
  Status ZeroRange(const InodeRef& inode, uint64_t offset, uint64_t length);
  void FlusherLoop();
  void WakeFlusher();
  void QueueForFlush(const InodeRef& inode);
  static constexpr size_t kReleaseBatch = 512;
  void MaybeUpdateAtime(uint64_t ino);

  // Snapshots (snapshots.cc).
  struct View {
    uint64_t snapshot = 0;  // id
    uint64_t epoch = 0;
    uint64_t ino = 0;       // the inode within the snapshot
  };
  static bool IsView(uint64_t ino) { return ino >= kLiveInoLimit; }
  Status LoadSnapshots();
  Status ResumePending();
  // The version of `key` a snapshot taken at `epoch` sees.
  Result<std::optional<std::string>> GetAt(std::string_view key, uint64_t epoch);
  Result<schema::InodeRecord> RecordAt(uint64_t ino, uint64_t epoch);
  Result<View> ResolveView(uint64_t view_ino);
  Result<Attr> ViewGetAttr(uint64_t view_ino);
  Result<Attr> ViewLookup(uint64_t parent, std::string_view name);
  Status ViewReadDir(uint64_t ino, std::string_view after, const std::function<bool(const DirEntry&)>& fn);
  Result<size_t> ViewRead(uint64_t ino, uint64_t offset, std::span<std::byte> out);
  // Names of the entries under `prefix` (live and kept versions) after `after`, in order.
  Status VersionedNames(const std::string& prefix, std::string_view after,
                        const std::function<bool(std::string_view name)>& fn);
  Result<SnapshotInfo> CreateSnapshotLocked(std::string_view name);
  Status RunDelete(const schema::PendingOp& op);
  Status RunRestore(const schema::PendingOp& op, std::vector<uint64_t>* inodes,
                    std::vector<std::pair<uint64_t, std::string>>* entries);
  Result<uint64_t> ExclusiveBytes(const schema::SnapshotRecord& rec, uint64_t previous, uint64_t to);
  std::optional<std::pair<uint64_t, schema::SnapshotRecord>> FindSnapshot(std::string_view name);
  void ResetStatesAfterRestore();
  static Status ReadOnlyView() { return Status::Error(EROFS, "snapshots are read-only"); }

  static constexpr size_t kStripes = 256;

  const VolumeOptions options_;
  std::unique_ptr<Device> device_;
  std::unique_ptr<MetaFs> space_;  // the device's segments and the metadata's files
  std::unique_ptr<MetaDb> db_;
  mutable std::mutex sb_mu_;  // guards sb_ (a leaf lock); only Resize changes it
  Superblock sb_;
  const uint32_t chunk_size_;
  CompressionSpec compression_;
  std::unique_ptr<ChunkStore> store_;
  std::unique_ptr<ThreadPool> pool_;
  // One thread that writes flush rounds' records and one that commits their
  // metadata, while the flusher prepares the next round (see FlushLocked);
  // long-lived, so that their io_uring rings are too.
  std::unique_ptr<ThreadPool> write_pool_;
  std::unique_ptr<ThreadPool> commit_pool_;
  std::function<void()> commit_hook_;  // SetCommitHookForTesting
  std::function<void()> modify_hook_;  // SetModifyHookForTesting

  // Serializes namespace changes (create, link, unlink, rename...) and the
  // volume counters below.
  std::mutex ns_mu_;
  schema::VolumeState state_;
  uint64_t inode_count_ = 0;

  // Guards state_.current_epoch and latest_snapshot_: commits hold it shared
  // from reading the epoch until their batch is written; taking a snapshot
  // holds it exclusively. Lock order: after stripes, before the store.
  std::shared_mutex epoch_mu_;
  uint64_t latest_snapshot_ = 0;  // epoch of the newest snapshot, 0 if none

  // One administrative operation (snapshot create, delete, restore; trim;
  // resize) at a time; taken first.
  std::mutex admin_mu_;
  // Guards snapshots_ (a leaf lock).
  std::mutex snap_mu_;
  std::map<uint64_t, schema::SnapshotRecord> snapshots_;  // id -> active snapshot

  std::mutex stripes_[kStripes];  // guard each inode's record and in-memory state

  // Fingerprints cached in all inodes' extent_fps (declared before states_,
  // which it outlives); at most cache_bytes / 2048 of them (8 GiB of file
  // data per 256 MiB of cache with 64 KiB chunks).
  std::atomic<int64_t> extent_cache_total_{0};

  std::mutex states_mu_;  // guards states_
  std::unordered_map<uint64_t, InodeRef> states_;

  // Buffered data accounting and the flusher.
  std::mutex flush_mu_;  // guards the fields below
  std::condition_variable flush_cv_;     // wakes the flusher
  std::condition_variable drained_cv_;   // wakes writers waiting for room
  uint64_t buffered_bytes_ = 0;          // dirty + in-flight chunk buffers
  uint64_t buffer_limit_ = 0;            // cap on buffered_bytes_
  uint64_t round_bytes_ = 0;             // chunks taken by one flush round
  std::atomic<uint64_t> write_seq_{1};   // stamps new chunk buffers
  uint64_t flush_rounds_ = 0;            // completed flusher rounds
  bool flush_requested_ = false;
  bool stopping_ = false;
  std::vector<InodeRef> release_queue_;  // closed files to flush soon
  std::thread flusher_;
  std::atomic<bool> closed_{false};

  // The background scrub (scrub.cc).
  void ScrubLoop();
  mutable std::mutex scrub_mu_;  // guards scrub_ (a leaf lock)
  ScrubStatus scrub_;
  std::atomic<bool> scrub_cancel_{false};
  std::thread scrubber_;
};

}  // namespace qcfs
