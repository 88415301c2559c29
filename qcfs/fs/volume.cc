// Volume: opening, closing, formatting, and the namespace operations.
// The data path (read, write, flush, truncate) is in file_data.cc.
#include "qcfs/fs/volume.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include <uuid/uuid.h>

#include "qcfs/core/coding.h"
#include "qcfs/core/log.h"
#include "qcfs/core/units.h"
#include "qcfs/fs/internal/inode.h"
#include "qcfs/fs/internal/posix_acl.h"
#include "qcfs/fs/internal/time.h"
#include "qcfs/fs/internal/versioned.h"

namespace qcfs {

using internal::Inode;
using schema::DirentRecord;
using schema::InodeRecord;

namespace {

rocksdb::Slice Sl(const std::string& s) { return rocksdb::Slice(s); }

// The metadata database's name inside MetaFs (RocksDB wants a path).
constexpr const char* kMetaDbPath = "/qcfs-metadata";

// Rejects ".snapshots" in the root: the name belongs to the snapshot directory.
Status CheckReserved(uint64_t parent, std::string_view name) {
  if (parent == kRootIno && name == kSnapshotsDirName) {
    return Status::Errorf(EEXIST, "'{}' is reserved for snapshots", name);
  }
  return Status::Ok();
}

Status ValidateName(std::string_view name) {
  if (name.empty()) return Status::Error(ENOENT, "empty name");
  if (name.size() > kMaxNameLength) return Status::Errorf(ENAMETOOLONG, "name is longer than {} bytes", kMaxNameLength);
  if (name == "." || name == "..") return Status::Errorf(EINVAL, "'{}' cannot be created or removed", name);
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return Status::Error(EINVAL, "name contains '/' or NUL");
  }
  return Status::Ok();
}

uint8_t DirentType(uint32_t mode) { return static_cast<uint8_t>(IFTODT(mode)); }

std::string DescribeSignature(const std::string& path) {
  auto sig = ProbeExistingSignature(path);
  if (sig.ok() && !sig->empty() && *sig != "qcfs") return fmt::format(" (it holds {})", *sig);
  return "";
}

}  // namespace

struct stat Attr::ToStat() const {
  struct stat st {};
  st.st_ino = ino;
  st.st_mode = mode;
  st.st_nlink = nlink;
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_rdev = rdev;
  st.st_size = static_cast<off_t>(size);
  st.st_blksize = 4096;
  st.st_blocks = static_cast<blkcnt_t>(blocks);
  st.st_atim = internal::ToTimespec(atime_ns);
  st.st_mtim = internal::ToTimespec(mtime_ns);
  st.st_ctim = internal::ToTimespec(ctime_ns);
  return st;
}

MetaFsLayout LayoutFor(const Superblock& sb) {
  MetaFsLayout layout;
  layout.root_offset[0] = Superblock::kMetaRootOffset;
  layout.root_offset[1] = Superblock::kMetaRootOffset + kBlockSize;
  layout.data_offset = sb.data_offset;
  layout.segment_size = sb.segment_size;
  layout.segment_count = sb.segment_count;
  layout.uuid = sb.uuid;
  return layout;
}

// ---------------------------------------------------------------- mkfs

namespace {

// The segment size mkfs uses, once the options are known to be valid.
Result<uint32_t> SegmentSizeFor(const MkfsOptions& options) {
  auto pow2 = [](uint64_t v) { return v != 0 && (v & (v - 1)) == 0; };
  if (!pow2(options.chunk_size) || options.chunk_size < 4096 || options.chunk_size > (1u << 20)) {
    return Status::Errorf(EINVAL, "invalid chunk size {}: must be a power of two from 4K to 1M",
                          FormatSize(options.chunk_size));
  }
  uint32_t segment_size = options.segment_size != 0 ? options.segment_size
                                                    : std::max<uint32_t>(4u << 20, 4 * options.chunk_size);
  if (!pow2(segment_size) || segment_size < 2 * options.chunk_size || segment_size > (256u << 20)) {
    return Status::Errorf(EINVAL, "invalid segment size {}: a power of two, at least twice the chunk size",
                          FormatSize(segment_size));
  }
  return segment_size;
}

}  // namespace

Status Mkfs(const std::string& device_path, const MkfsOptions& options) {
  QCFS_RETURN_IF_ERROR(SegmentSizeFor(options).status());

  struct stat st {};
  bool exists = ::stat(device_path.c_str(), &st) == 0;
  if (!exists && errno != ENOENT) return ErrnoStatus(errno, device_path);
  bool block = exists && S_ISBLK(st.st_mode);
  if (exists && !block && !S_ISREG(st.st_mode)) {
    return Status::Errorf(EINVAL, "{} is not a regular file or a block device", device_path);
  }
  if (block && options.size != 0) {
    return Status::Errorf(EINVAL, "{} is a block device: --size applies to image files only", device_path);
  }
  if (!exists && options.size == 0) {
    return Status::Errorf(ENOENT, "{} does not exist; give --size to create an image file", device_path);
  }
  if (exists && !options.force) {
    QCFS_ASSIGN_OR_RETURN(std::string sig, ProbeExistingSignature(device_path));
    if (sig == "qcfs") {
      return Status::Errorf(EEXIST, "{} holds a QCFS volume; refusing to overwrite it without --force", device_path);
    }
    if (!sig.empty()) {
      return Status::Errorf(EEXIST, "{} holds a{} {} signature; refusing to overwrite it without --force",
                            device_path, sig == "ext4" || sig == "xfs" ? "n" : "", sig);
    }
  }
  if (options.size != 0) {
    QCFS_RETURN_IF_ERROR(CreateImageFile(device_path, options.size, exists));
  }

  QCFS_ASSIGN_OR_RETURN(auto device, OpenDevice(device_path, DeviceOptions{}));
  return MkfsOn(device.get(), options);
}

Status MkfsOn(Device* device, const MkfsOptions& options) {
  const std::string device_path = device->path().empty() ? "the device" : device->path();
  QCFS_ASSIGN_OR_RETURN(uint32_t segment_size, SegmentSizeFor(options));
  Superblock sb;
  uuid_generate_random(sb.uuid.data());
  sb.device_size = device->size();
  sb.incompat_features = Superblock::kIncompatBlockSums | Superblock::kIncompatMetaFileCopies;
  sb.chunk_size = options.chunk_size;
  sb.segment_size = segment_size;
  sb.compression = options.compression;
  sb.data_offset = Superblock::kDefaultDataOffset;
  sb.created_ns = internal::NowNs();
  if (sb.device_size < sb.data_offset + 8ull * segment_size) {
    return Status::Errorf(ENOSPC, "{} is too small: {} (at least {} with {} segments)", device_path,
                          FormatSize(sb.device_size), FormatSize(sb.data_offset + 8ull * segment_size),
                          FormatSize(segment_size));
  }
  sb.segment_count = (sb.device_size - sb.data_offset) / segment_size;

  // Wipe the head of the device (old signatures live there) and invalidate
  // any previous QCFS superblock before the new metadata exists.
  std::vector<std::byte> zeros(sb.data_offset);
  QCFS_RETURN_IF_ERROR(device->Write(0, zeros));
  QCFS_RETURN_IF_ERROR(device->Sync());

  {
    QCFS_ASSIGN_OR_RETURN(auto space, MetaFs::Format(device, LayoutFor(sb)));
    MetaOptions mo;
    mo.create = true;
    mo.fs = space.get();
    mo.write_buffer_bytes = 4ull << 20;
    QCFS_ASSIGN_OR_RETURN(auto db, MetaDb::Open(kMetaDbPath, mo));
    rocksdb::WriteBatch batch;
    schema::VolumeState vs;
    vs.next_ino = kRootIno + 1;
    vs.current_epoch = 1;
    vs.clean_unmount = 1;
    vs.inodes = 1;
    std::string v;
    vs.EncodeTo(&v);
    batch.Put(Sl(schema::SystemKey(schema::kVolumeStateName)), Sl(v));
    v.clear();
    schema::StoreStats{}.EncodeTo(&v);
    batch.Put(Sl(schema::SystemKey(schema::kStatsName)), Sl(v));
    InodeRecord root;
    root.epoch = vs.current_epoch;
    root.mode = S_IFDIR | 0755;
    root.uid = ::getuid();
    root.gid = ::getgid();
    root.nlink = 2;
    root.atime_ns = root.mtime_ns = root.ctime_ns = root.btime_ns = sb.created_ns;
    root.parent = kRootIno;
    v.clear();
    root.EncodeTo(&v);
    batch.Put(Sl(schema::InodeKey(kRootIno)), Sl(v));
    QCFS_RETURN_IF_ERROR(db->Write(&batch, true));
    QCFS_RETURN_IF_ERROR(db->Flush());
    db.reset();
    QCFS_RETURN_IF_ERROR(space->Sync());
  }
  // Last: a device only looks like QCFS once its metadata is complete.
  return WriteSuperblock(device, sb);
}

// ---------------------------------------------------------------- open / close

Volume::Volume(std::unique_ptr<Device> device, std::unique_ptr<MetaFs> space, std::unique_ptr<MetaDb> db,
               const Superblock& sb, const VolumeOptions& options)
    : options_(options),
      device_(std::move(device)),
      space_(std::move(space)),
      db_(std::move(db)),
      sb_(sb),
      chunk_size_(sb.chunk_size),
      compression_(options.compression.value_or(sb.compression)) {
  buffer_limit_ = options.cache_bytes / 2;
  round_bytes_ = std::max<uint64_t>(options.cache_bytes / 8, 4ull * sb.chunk_size);
}

Result<std::unique_ptr<Volume>> Volume::Open(const std::string& device_path, const VolumeOptions& options) {
  DeviceOptions dopts;
  dopts.read_only = options.read_only;
  auto device_or = OpenDevice(device_path, dopts);
  if (!device_or.ok()) return device_or.status();
  return OpenOn(std::move(device_or).value(), options);
}

Result<std::unique_ptr<Volume>> Volume::OpenOn(std::unique_ptr<Device> device, const VolumeOptions& given) {
  // Every cache is a share of the one memory budget (cache_bytes).
  VolumeOptions options = given;
  options.cache_bytes = std::max<uint64_t>(options.cache_bytes, 16ull << 20);
  options.store.read_cache_bytes = options.cache_bytes / 16;
  options.meta.block_cache_bytes = options.cache_bytes / 16;
  options.meta.write_buffer_bytes = std::max<uint64_t>(options.cache_bytes / 32, 1ull << 20);
  const std::string device_path = device->path().empty() ? "the device" : device->path();
  auto sb_or = ReadSuperblock(device.get());
  if (!sb_or.ok()) {
    if (sb_or.status().code() == EINVAL) {
      return Status::Errorf(EINVAL, "{}: not a QCFS volume{}", device_path,
                            device->path().empty() ? "" : DescribeSignature(device_path));
    }
    return sb_or.status().WithContext(device_path);
  }
  Superblock sb = *sb_or;
  if (sb.device_size > device->size()) {
    return Status::Errorf(EIO, "{} is {} but the volume spans {}: the device was truncated", device_path,
                          FormatSize(device->size()), FormatSize(sb.device_size));
  }
  if (!options.read_only && (sb.incompat_features & Superblock::kIncompatMetaFileCopies) == 0) {
    // A volume from before MetaFs kept its files twice: say so before the
    // mount writes a journal with their checksums and mirrors.
    sb.incompat_features |= Superblock::kIncompatMetaFileCopies;
    QCFS_RETURN_IF_ERROR(
        WriteSuperblock(device.get(), sb).WithContext("marking the volume's mirrored metadata files"));
    Log(LogLevel::kInfo, "{}: volume upgraded: qcfs releases before mirrored metadata files can no longer mount it",
        device_path);
  }
  // Only qcfs check --repair rolls a damaged metadata journal back.
  const auto damage = options.maintenance ? MetaFs::Damage::kRollBack : MetaFs::Damage::kRefuse;
  auto space_or = options.read_only ? MetaFs::MountReadOnly(device.get(), LayoutFor(sb), damage)
                                    : MetaFs::Mount(device.get(), LayoutFor(sb), damage);
  if (!space_or.ok()) return space_or.status().WithContext(device_path);
  std::unique_ptr<MetaFs> space = std::move(space_or).value();
  space->set_discard(options.store.discard);
  MetaOptions mo = options.meta;
  mo.read_only = options.read_only;
  mo.fs = space.get();
  auto db_or = MetaDb::Open(kMetaDbPath, mo);
  if (!db_or.ok()) return db_or.status().WithContext(device_path);
  std::unique_ptr<MetaDb> db = std::move(db_or).value();
  std::unique_ptr<Volume> v(new Volume(std::move(device), std::move(space), std::move(db), sb, options));
  QCFS_RETURN_IF_ERROR(v->Start());
  return v;
}

Status Volume::Start() {
  QCFS_ASSIGN_OR_RETURN(auto vs, db_->Get(schema::SystemKey(schema::kVolumeStateName)));
  if (!vs.has_value() || !schema::VolumeState::Decode(*vs, &state_)) {
    return Status::Error(EUCLEAN, "metadata holds no valid volume state; run qcfs check");
  }
  inode_count_ = state_.inodes;
  QCFS_ASSIGN_OR_RETURN(store_, ChunkStore::Open(device_.get(), db_.get(), space_.get(), sb_, options_.store));
  pool_ = std::make_unique<ThreadPool>(options_.worker_threads);
  write_pool_ = std::make_unique<ThreadPool>(1);
  commit_pool_ = std::make_unique<ThreadPool>(1);
  QCFS_RETURN_IF_ERROR(LoadSnapshots());
  if (!options_.read_only && (sb_.incompat_features & Superblock::kIncompatBlockSums) == 0) {
    // An older volume: say so in the superblock before anything is written
    // in the formats an older qcfs cannot read.
    Superblock sb = sb_;
    sb.incompat_features |= Superblock::kIncompatBlockSums;
    QCFS_RETURN_IF_ERROR(WriteSuperblock(device_.get(), sb).WithContext("marking the volume's new record formats"));
    std::lock_guard lock(sb_mu_);
    sb_ = sb;
    Log(LogLevel::kInfo, "{}: volume upgraded: qcfs releases before block checksums can no longer mount it",
        device_->path());
  }
  if (options_.read_only || options_.maintenance) return Status::Ok();
  QCFS_RETURN_IF_ERROR(ResumePending());
  if (state_.clean_unmount == 0) {
    Log(LogLevel::kInfo, "{}: volume was not unmounted cleanly; recovered to the last durable state",
        device_->path());
  }
  QCFS_RETURN_IF_ERROR(PurgeOrphans());
  {
    std::lock_guard lock(ns_mu_);
    state_.clean_unmount = 0;
    rocksdb::WriteBatch batch;
    PutVolumeState(&batch);
    QCFS_RETURN_IF_ERROR(WriteBatch(&batch, true));
  }
  flusher_ = std::thread([this] { FlusherLoop(); });
  return Status::Ok();
}

Volume::~Volume() {
  Status s = Close();
  if (!s.ok()) Log(LogLevel::kError, "closing the volume: {}", s.ToString());
}

Status Volume::Close() {
  if (closed_.exchange(true)) return Status::Ok();
  if (options_.maintenance) {
    commit_pool_.reset();
    write_pool_.reset();
    pool_.reset();
    store_.reset();
    Status flushed = db_->Flush();
    db_.reset();
    if (flushed.ok()) flushed = space_->Sync();
    space_.reset();
    device_.reset();
    return flushed;
  }
  CancelScrub();
  if (scrubber_.joinable()) scrubber_.join();
  Status result;
  if (!options_.read_only) result = Sync();
  {
    std::lock_guard lock(flush_mu_);
    stopping_ = true;
  }
  flush_cv_.notify_all();
  drained_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  if (!options_.read_only && result.ok()) {
    std::lock_guard lock(ns_mu_);
    state_.clean_unmount = 1;
    rocksdb::WriteBatch batch;
    PutVolumeState(&batch);
    result = WriteBatch(&batch, true);
  }
  if (!options_.read_only && result.ok()) result = store_->SyncFreed();
  if (!options_.read_only && result.ok()) result = db_->Flush();
  commit_pool_.reset();
  write_pool_.reset();
  pool_.reset();
  store_.reset();
  db_.reset();
  if (!options_.read_only && result.ok()) result = space_->Sync();
  space_.reset();
  device_.reset();
  return result;
}

Status Volume::WriteBatch(rocksdb::WriteBatch* batch, bool sync) { return db_->Write(batch, sync); }

void Volume::PutVolumeState(rocksdb::WriteBatch* batch) {
  state_.inodes = inode_count_;
  std::string v;
  state_.EncodeTo(&v);
  batch->Put(Sl(schema::SystemKey(schema::kVolumeStateName)), Sl(v));
}

Status Volume::CheckWritable() const {
  if (options_.read_only) return Status::Error(EROFS, "volume is mounted read-only");
  return Status::Ok();
}

// ---------------------------------------------------------------- inode records

Result<InodeRecord> Volume::LoadRecord(uint64_t ino) {
  QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(schema::InodeKey(ino)));
  if (!value.has_value()) return Status::Errorf(ENOENT, "inode {} does not exist", ino);
  InodeRecord rec;
  if (!InodeRecord::Decode(*value, &rec)) {
    return Status::Errorf(EIO, "inode {}: malformed record; run qcfs check", ino);
  }
  return rec;
}

Volume::InodeRef Volume::FindState(uint64_t ino) {
  std::lock_guard lock(states_mu_);
  auto it = states_.find(ino);
  return it == states_.end() ? nullptr : it->second;
}

Result<Volume::InodeRef> Volume::Acquire(uint64_t ino) {
  std::lock_guard stripe(StripeFor(ino));
  if (InodeRef found = FindState(ino)) return found;
  QCFS_ASSIGN_OR_RETURN(InodeRecord rec, LoadRecord(ino));
  auto inode = std::make_shared<Inode>(ino);
  inode->rec = rec;
  inode->size = rec.size;
  std::lock_guard lock(states_mu_);
  return states_.emplace(ino, inode).first->second;
}

void Volume::MaybeDropState(const InodeRef& inode) {
  std::lock_guard stripe(StripeFor(inode->ino));
  if (inode->open_count > 0 || !inode->dirty.empty() || !inode->inflight.empty() || inode->attr_dirty ||
      !inode->lost.empty()) {
    return;
  }
  if (!inode->purged && inode->rec.nlink == 0) return;  // an orphan waits for Purge
  std::lock_guard lock(states_mu_);
  auto it = states_.find(inode->ino);
  if (it != states_.end() && it->second == inode) states_.erase(it);
}

bool Volume::DeferRecord(const InodeRef& state, const InodeRecord& rec) {
  if (!state || state->open_count == 0 || !S_ISREG(state->rec.mode) || state->purged || state->stale) return false;
  state->rec = rec;
  state->attr_dirty = true;
  if (state->dirty_since.load() == 0) state->dirty_since.store(internal::MonoNs());
  return true;
}

Attr Volume::ToAttr(uint64_t ino, const InodeRecord& rec, const Inode* state) const {
  Attr a;
  a.ino = ino;
  a.mode = rec.mode;
  a.nlink = rec.nlink;
  a.uid = rec.uid;
  a.gid = rec.gid;
  a.rdev = rec.rdev;
  a.size = state != nullptr ? state->size : rec.size;
  uint64_t chunks = rec.chunks + (state != nullptr ? state->dirty.size() : 0);
  if (S_ISREG(rec.mode)) {
    a.blocks = std::min<uint64_t>(chunks * (chunk_size_ / 512), (a.size + 511) / 512);
  } else if (S_ISDIR(rec.mode)) {
    a.blocks = 8;
  }
  a.atime_ns = rec.atime_ns;
  a.mtime_ns = rec.mtime_ns;
  a.ctime_ns = rec.ctime_ns;
  a.btime_ns = rec.btime_ns;
  return a;
}

Status Volume::PutInode(internal::VersionedBatch* vb, uint64_t ino, const InodeRecord& rec) {
  std::string v;
  InodeRecord copy = rec;
  copy.epoch = vb->epoch();
  copy.EncodeTo(&v);
  return vb->Put(schema::InodeKey(ino), v).status();
}

Status Volume::PutDirent(internal::VersionedBatch* vb, uint64_t parent, std::string_view name, uint64_t ino,
                         uint32_t mode) {
  std::string v;
  DirentRecord{vb->epoch(), ino, DirentType(mode)}.EncodeTo(&v);
  return vb->Put(schema::DirentKey(parent, name), v).status();
}

Volume::CommitScope Volume::BeginCommit() {
  CommitScope scope{std::shared_lock<std::shared_mutex>(epoch_mu_), {}};
  scope.epochs.current = state_.current_epoch;
  scope.epochs.latest_snapshot = latest_snapshot_;
  return scope;
}

std::vector<std::unique_lock<std::mutex>> Volume::LockInodes(std::vector<uint64_t> inos) {
  std::vector<size_t> stripes;
  for (uint64_t ino : inos) stripes.push_back(ino % kStripes);
  std::sort(stripes.begin(), stripes.end());
  stripes.erase(std::unique(stripes.begin(), stripes.end()), stripes.end());
  std::vector<std::unique_lock<std::mutex>> locks;
  for (size_t s : stripes) locks.emplace_back(stripes_[s]);
  return locks;
}

// ---------------------------------------------------------------- lookups

Result<DirentRecord> Volume::LookupDirent(uint64_t parent, std::string_view name) {
  QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(schema::DirentKey(parent, name)));
  if (!value.has_value()) return Status::Errorf(ENOENT, "'{}' not found", name);
  DirentRecord d;
  if (!DirentRecord::Decode(*value, &d)) {
    return Status::Errorf(EIO, "directory {} entry '{}': malformed record; run qcfs check", parent, name);
  }
  return d;
}

Result<Attr> Volume::GetAttr(uint64_t ino) {
  if (IsView(ino)) return ViewGetAttr(ino);
  std::lock_guard stripe(StripeFor(ino));
  if (InodeRef s = FindState(ino)) {
    if (s->purged) return Status::Errorf(ENOENT, "inode {} was deleted", ino);
    return ToAttr(ino, s->rec, s.get());
  }
  QCFS_ASSIGN_OR_RETURN(InodeRecord rec, LoadRecord(ino));
  return ToAttr(ino, rec, nullptr);
}

Result<Attr> Volume::Lookup(uint64_t parent, std::string_view name) {
  if (name.size() > kMaxNameLength) return Status::Errorf(ENAMETOOLONG, "name is longer than {} bytes", kMaxNameLength);
  if (IsView(parent)) return ViewLookup(parent, name);
  if (parent == kRootIno && name == kSnapshotsDirName) return ViewGetAttr(kSnapshotsDirIno);
  if (name == ".") return GetAttr(parent);
  if (name == "..") {
    QCFS_ASSIGN_OR_RETURN(Attr p, GetAttr(parent));
    if (!S_ISDIR(p.mode)) return Status::Error(ENOTDIR, "not a directory");
    QCFS_ASSIGN_OR_RETURN(InodeRecord rec, LoadRecord(parent));
    return GetAttr(rec.parent);
  }
  QCFS_ASSIGN_OR_RETURN(DirentRecord d, LookupDirent(parent, name));
  return GetAttr(d.ino);
}

Result<std::string> Volume::Readlink(uint64_t ino) {
  InodeRecord rec;
  if (IsView(ino)) {
    QCFS_ASSIGN_OR_RETURN(View v, ResolveView(ino));
    QCFS_ASSIGN_OR_RETURN(rec, RecordAt(v.ino, v.epoch));
  } else {
    QCFS_ASSIGN_OR_RETURN(rec, LoadRecord(ino));
  }
  if (!S_ISLNK(rec.mode)) return Status::Error(EINVAL, "not a symbolic link");
  return rec.symlink;
}

Status Volume::ReadDir(uint64_t ino, std::string_view after, const std::function<bool(const DirEntry&)>& fn) {
  if (IsView(ino)) return ViewReadDir(ino, after, fn);
  QCFS_ASSIGN_OR_RETURN(InodeRecord rec, LoadRecord(ino));
  if (!S_ISDIR(rec.mode)) return Status::Error(ENOTDIR, "not a directory");
  // .snapshots shows in the root in its sorted place when asked for.
  bool snapdir = options_.snapdir_visible && ino == kRootIno && after < kSnapshotsDirName;
  auto it = db_->Iterate(schema::DirentPrefix(ino));
  it->Seek(after);
  if (!after.empty() && it->Valid() && it->key_suffix() == after) it->Next();
  for (; it->Valid(); it->Next()) {
    if (snapdir && it->key_suffix() > kSnapshotsDirName) {
      snapdir = false;
      if (!fn(DirEntry{std::string(kSnapshotsDirName), kSnapshotsDirIno, DT_DIR})) return Status::Ok();
    }
    DirentRecord d;
    if (!DirentRecord::Decode(it->value(), &d)) {
      return Status::Errorf(EIO, "directory {}: malformed entry; run qcfs check", ino);
    }
    DirEntry e{std::string(it->key_suffix()), d.ino, d.type};
    if (!fn(e)) return Status::Ok();
  }
  QCFS_RETURN_IF_ERROR(it->status());
  if (snapdir) fn(DirEntry{std::string(kSnapshotsDirName), kSnapshotsDirIno, DT_DIR});
  return Status::Ok();
}

// ---------------------------------------------------------------- creating

Result<Attr> Volume::CreateNode(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
                                std::string_view symlink, const Caller& caller, bool open) {
  QCFS_RETURN_IF_ERROR(CheckWritable());
  if (IsView(parent)) return ReadOnlyView();
  QCFS_RETURN_IF_ERROR(ValidateName(name));
  QCFS_RETURN_IF_ERROR(CheckReserved(parent, name));
  std::lock_guard ns(ns_mu_);
  const uint64_t ino = state_.next_ino;
  auto locks = LockInodes({parent, ino});
  InodeRef pstate = FindState(parent);
  InodeRecord prec;
  if (pstate) {
    prec = pstate->rec;
  } else {
    QCFS_ASSIGN_OR_RETURN(prec, LoadRecord(parent));
  }
  if (!S_ISDIR(prec.mode)) return Status::Error(ENOTDIR, "parent is not a directory");
  if (prec.nlink == 0) return Status::Error(ENOENT, "parent directory was removed");
  QCFS_ASSIGN_OR_RETURN(auto existing, db_->Get(schema::DirentKey(parent, name)));
  if (existing.has_value()) return Status::Errorf(EEXIST, "'{}' exists", name);
  if (S_ISDIR(mode) && prec.nlink >= 65000) return Status::Error(EMLINK, "too many subdirectories");

  // The directory's default ACL, if any, takes the umask's place: the new
  // inode's access ACL is made from it, and a directory keeps it as its own.
  std::optional<std::string> access_acl, default_acl;
  if (!S_ISLNK(mode)) {
    std::optional<std::string> inherited;
    if (prec.flags & InodeRecord::kInodeMayHaveXattrs) {
      QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(schema::XattrKey(parent, internal::kDefaultAclName)));
      schema::XattrRecord x;
      if (value.has_value()) {
        if (!schema::XattrRecord::Decode(*value, &x)) return Status::Error(EIO, "malformed attribute record");
        inherited = std::move(x.value);
      }
    }
    Result<internal::PosixAcl> acl = internal::PosixAcl{};
    if (inherited) acl = internal::PosixAcl::Parse(*inherited);
    if (!acl.ok()) return Status::Errorf(EIO, "directory {}: default ACL: {}", parent, acl.status().message());
    if (inherited && !acl->entries.empty()) {
      if (internal::InheritAccessAcl(&*acl, &mode)) access_acl = acl->Encode();
      if (S_ISDIR(mode)) default_acl = std::move(inherited);
    } else {
      mode &= ~(caller.umask & 0777);
    }
  }

  const int64_t now = internal::NowNs();
  InodeRecord rec;
  rec.mode = mode;
  rec.uid = caller.uid;
  rec.gid = caller.gid;
  if (prec.mode & S_ISGID) {
    rec.gid = prec.gid;
    if (S_ISDIR(mode)) rec.mode |= S_ISGID;
  }
  rec.nlink = S_ISDIR(mode) ? 2 : 1;
  rec.atime_ns = rec.mtime_ns = rec.ctime_ns = rec.btime_ns = now;
  rec.rdev = rdev;
  rec.parent = parent;
  rec.name.assign(name);
  rec.symlink.assign(symlink);
  rec.size = S_ISLNK(mode) ? symlink.size() : 0;

  prec.size += 1;
  if (S_ISDIR(mode)) prec.nlink += 1;
  prec.mtime_ns = prec.ctime_ns = now;

  auto scope = BeginCommit();
  rocksdb::WriteBatch batch;
  internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
  std::optional<std::string> absent;
  for (const auto& [name, value] : {std::pair{internal::kAccessAclName, &access_acl},
                                    std::pair{internal::kDefaultAclName, &default_acl}}) {
    if (!value->has_value()) continue;
    std::string xv;
    schema::XattrRecord{vb.epoch(), **value}.EncodeTo(&xv);
    QCFS_RETURN_IF_ERROR(vb.Put(schema::XattrKey(ino, name), xv, &absent).status());
    rec.flags |= InodeRecord::kInodeMayHaveXattrs;
  }
  std::string iv;
  rec.epoch = vb.epoch();
  rec.EncodeTo(&iv);
  QCFS_RETURN_IF_ERROR(vb.Put(schema::InodeKey(ino), iv, &absent).status());
  std::string d;
  DirentRecord{vb.epoch(), ino, DirentType(mode)}.EncodeTo(&d);
  QCFS_RETURN_IF_ERROR(vb.Put(schema::DirentKey(parent, name), d, &existing).status());
  QCFS_RETURN_IF_ERROR(PutInode(&vb, parent, prec));
  state_.next_ino = ino + 1;
  ++inode_count_;
  PutVolumeState(&batch);
  Status s = WriteBatch(&batch);
  if (!s.ok()) {
    state_.next_ino = ino + 1;  // never hand out a number twice
    --inode_count_;
    return s;
  }
  if (pstate) pstate->rec = prec;
  if (open) {
    auto inode = std::make_shared<Inode>(ino);
    inode->rec = rec;
    inode->size = 0;
    inode->open_count = 1;
    std::lock_guard lock(states_mu_);
    states_[ino] = inode;
  }
  return ToAttr(ino, rec, nullptr);
}

Result<Attr> Volume::Mknod(uint64_t parent, std::string_view name, uint32_t mode, uint64_t rdev,
                           const Caller& caller) {
  uint32_t type = mode & S_IFMT;
  if (type == 0) mode |= S_IFREG;
  else if (type != S_IFREG && type != S_IFCHR && type != S_IFBLK && type != S_IFIFO && type != S_IFSOCK) {
    return Status::Error(EINVAL, "mknod: unsupported file type");
  }
  if (type != S_IFCHR && type != S_IFBLK) rdev = 0;
  return CreateNode(parent, name, mode, rdev, {}, caller, false);
}

Result<Attr> Volume::Mkdir(uint64_t parent, std::string_view name, uint32_t mode, const Caller& caller) {
  return CreateNode(parent, name, S_IFDIR | (mode & 07777), 0, {}, caller, false);
}

Result<Attr> Volume::Symlink(uint64_t parent, std::string_view name, std::string_view target, const Caller& caller) {
  if (target.empty()) return Status::Error(ENOENT, "empty symlink target");
  if (target.size() > kMaxSymlinkLength) return Status::Error(ENAMETOOLONG, "symlink target is too long");
  return CreateNode(parent, name, S_IFLNK | 0777, 0, target, caller, false);
}

Result<Attr> Volume::Create(uint64_t parent, std::string_view name, uint32_t mode, int flags, const Caller& caller) {
  (void)flags;
  return CreateNode(parent, name, S_IFREG | (mode & 07777), 0, {}, caller, true);
}

Result<Attr> Volume::Link(uint64_t ino, uint64_t new_parent, std::string_view new_name) {
  QCFS_RETURN_IF_ERROR(CheckWritable());
  if (IsView(ino) || IsView(new_parent)) return ReadOnlyView();
  QCFS_RETURN_IF_ERROR(ValidateName(new_name));
  QCFS_RETURN_IF_ERROR(CheckReserved(new_parent, new_name));
  std::lock_guard ns(ns_mu_);
  auto locks = LockInodes({ino, new_parent});
  InodeRef state = FindState(ino);
  InodeRef pstate = FindState(new_parent);
  InodeRecord rec, prec;
  if (state) rec = state->rec; else { QCFS_ASSIGN_OR_RETURN(rec, LoadRecord(ino)); }
  if (pstate) prec = pstate->rec; else { QCFS_ASSIGN_OR_RETURN(prec, LoadRecord(new_parent)); }
  if (S_ISDIR(rec.mode)) return Status::Error(EPERM, "cannot hard-link a directory");
  if (!S_ISDIR(prec.mode)) return Status::Error(ENOTDIR, "target parent is not a directory");
  if (prec.nlink == 0) return Status::Error(ENOENT, "target directory was removed");
  if (rec.nlink == 0) return Status::Error(ENOENT, "file was deleted");
  if (rec.nlink >= 65000) return Status::Error(EMLINK, "too many links");
  QCFS_ASSIGN_OR_RETURN(auto existing, db_->Get(schema::DirentKey(new_parent, new_name)));
  if (existing.has_value()) return Status::Errorf(EEXIST, "'{}' exists", new_name);
  const int64_t now = internal::NowNs();
  rec.nlink += 1;
  rec.ctime_ns = now;
  prec.size += 1;
  prec.mtime_ns = prec.ctime_ns = now;
  auto scope = BeginCommit();
  rocksdb::WriteBatch batch;
  internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
  QCFS_RETURN_IF_ERROR(PutInode(&vb, ino, rec));
  QCFS_RETURN_IF_ERROR(PutInode(&vb, new_parent, prec));
  std::string d;
  DirentRecord{vb.epoch(), ino, DirentType(rec.mode)}.EncodeTo(&d);
  QCFS_RETURN_IF_ERROR(vb.Put(schema::DirentKey(new_parent, new_name), d, &existing).status());
  QCFS_RETURN_IF_ERROR(WriteBatch(&batch));
  if (state) state->rec = rec;
  if (pstate) pstate->rec = prec;
  return ToAttr(ino, rec, state.get());
}

// ---------------------------------------------------------------- removing

Result<std::optional<std::vector<std::pair<std::string, std::string>>>> Volume::DenseExtents(
    uint64_t ino, const InodeRecord& rec) {
  using Extents = std::vector<std::pair<std::string, std::string>>;
  constexpr uint64_t kMaxGets = 8;  // beyond this one prefix walk is cheaper than the Gets
  if (!S_ISREG(rec.mode)) return std::optional<Extents>();
  const uint64_t slots = (rec.size + chunk_size_ - 1) / chunk_size_;
  if (rec.chunks != slots || slots > kMaxGets) return std::optional<Extents>();
  Extents extents;
  extents.reserve(slots);
  for (uint64_t i = 0; i < slots; ++i) {
    std::string key = schema::ExtentKey(ino, i);
    QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(key));
    if (!value.has_value()) return std::optional<Extents>();  // the count is off: let the walk find them all
    extents.emplace_back(std::move(key), std::move(*value));
  }
  return std::optional<Extents>(std::move(extents));
}

Status Volume::DropLink(internal::VersionedBatch* vb, uint64_t ino, InodeRecord* rec, int64_t now,
                        std::string_view parent_name, uint64_t parent) {
  rocksdb::WriteBatch* batch = vb->batch();
  InodeRef state = FindState(ino);
  if (S_ISDIR(rec->mode)) {
    rec->nlink = 0;
  } else if (rec->nlink > 0) {
    rec->nlink -= 1;
  }
  rec->ctime_ns = now;
  if (rec->parent == parent && rec->name == parent_name && rec->nlink > 0) {
    // The primary name is gone; another link exists, but finding it would
    // mean a scan: paths in diffs show the inode number instead.
    rec->parent = 0;
    rec->name.clear();
  }
  if (rec->nlink > 0 || (state && state->open_count > 0)) {
    QCFS_RETURN_IF_ERROR(PutInode(vb, ino, *rec));
    // Still open: the data lives until the last close (Release -> Purge).
    if (rec->nlink == 0) batch->Put(Sl(schema::OrphanKey(ino)), rocksdb::Slice());
    QCFS_RETURN_IF_ERROR(WriteBatch(batch));
    if (state) {
      state->rec.nlink = rec->nlink;
      state->rec.ctime_ns = now;
      state->rec.parent = rec->parent;
      state->rec.name = rec->name;
    }
    return Status::Ok();
  }
  // Gone for good, in this same batch. Versions a snapshot sees are kept,
  // with their chunk references.
  auto txn = store_->Begin();
  auto drop_extent = [&](std::string_view key, std::string_view value) -> Status {
    std::optional<std::string> old(std::string{value});
    QCFS_ASSIGN_OR_RETURN(bool kept, vb->Delete(key, &old));
    schema::ExtentRecord e;
    if (schema::ExtentRecord::Decode(value, &e)) {
      if (kept) txn->AddHistory(e.raw_len);
      else QCFS_RETURN_IF_ERROR(txn->DropRef(e.fp));
    }
    return Status::Ok();
  };
  QCFS_ASSIGN_OR_RETURN(auto dense, DenseExtents(ino, *rec));
  if (dense) {
    for (const auto& [key, value] : *dense) QCFS_RETURN_IF_ERROR(drop_extent(key, value));
  } else {
    auto it = db_->Iterate(schema::ExtentPrefix(ino));
    for (it->Seek(); it->Valid(); it->Next()) QCFS_RETURN_IF_ERROR(drop_extent(it->key(), it->value()));
    QCFS_RETURN_IF_ERROR(it->status());
  }
  if (rec->flags & InodeRecord::kInodeMayHaveXattrs) {
    auto xit = db_->Iterate(schema::XattrPrefix(ino));
    for (xit->Seek(); xit->Valid(); xit->Next()) {
      std::optional<std::string> old(std::string(xit->value()));
      QCFS_RETURN_IF_ERROR(vb->Delete(xit->key(), &old).status());
    }
    QCFS_RETURN_IF_ERROR(xit->status());
  }
  QCFS_RETURN_IF_ERROR(vb->Delete(schema::InodeKey(ino)).status());
  QCFS_RETURN_IF_ERROR(txn->Prepare(batch));
  --inode_count_;
  PutVolumeState(batch);
  Status s = WriteBatch(batch);
  if (!s.ok()) {
    ++inode_count_;
    return s;
  }
  txn->Committed();
  if (state) {
    state->purged = true;
    size_t buffers = state->dirty.size();
    state->dirty.clear();
    ReleaseBuffer(buffers);
    std::lock_guard lock(states_mu_);
    states_.erase(ino);
  }
  return Status::Ok();
}

Status Volume::Unlink(uint64_t parent, std::string_view name) {
  QCFS_RETURN_IF_ERROR(CheckWritable());
  if (IsView(parent)) return ReadOnlyView();
  if (name.size() > kMaxNameLength) return Status::Error(ENAMETOOLONG, "name too long");
  std::lock_guard ns(ns_mu_);
  QCFS_ASSIGN_OR_RETURN(DirentRecord d, LookupDirent(parent, name));
  auto locks = LockInodes({parent, d.ino});
  InodeRef pstate = FindState(parent);
  InodeRecord prec;
  if (pstate) prec = pstate->rec; else { QCFS_ASSIGN_OR_RETURN(prec, LoadRecord(parent)); }
  InodeRef state = FindState(d.ino);
  InodeRecord rec;
  if (state) rec = state->rec; else { QCFS_ASSIGN_OR_RETURN(rec, LoadRecord(d.ino)); }
  if (S_ISDIR(rec.mode)) return Status::Error(EISDIR, "is a directory (use rmdir)");
  const int64_t now = internal::NowNs();
  prec.size -= std::min<uint64_t>(prec.size, 1);
  prec.mtime_ns = prec.ctime_ns = now;
  auto scope = BeginCommit();
  rocksdb::WriteBatch batch;
  internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
  QCFS_RETURN_IF_ERROR(vb.Delete(schema::DirentKey(parent, name)).status());
  QCFS_RETURN_IF_ERROR(PutInode(&vb, parent, prec));
  QCFS_RETURN_IF_ERROR(DropLink(&vb, d.ino, &rec, now, name, parent));
  if (pstate) pstate->rec = prec;
  return Status::Ok();
}

Status Volume::Rmdir(uint64_t parent, std::string_view name) {
  QCFS_RETURN_IF_ERROR(CheckWritable());
  if (IsView(parent)) return ReadOnlyView();
  if (name == ".") return Status::Error(EINVAL, "cannot remove '.'");
  if (name == "..") return Status::Error(ENOTEMPTY, "cannot remove '..'");
  if (name.size() > kMaxNameLength) return Status::Error(ENAMETOOLONG, "name too long");
  std::lock_guard ns(ns_mu_);
  QCFS_ASSIGN_OR_RETURN(DirentRecord d, LookupDirent(parent, name));
  auto locks = LockInodes({parent, d.ino});
  InodeRef pstate = FindState(parent);
  InodeRecord prec;
  if (pstate) prec = pstate->rec; else { QCFS_ASSIGN_OR_RETURN(prec, LoadRecord(parent)); }
  QCFS_ASSIGN_OR_RETURN(InodeRecord rec, LoadRecord(d.ino));
  if (!S_ISDIR(rec.mode)) return Status::Error(ENOTDIR, "not a directory");
  if (rec.size != 0) return Status::Error(ENOTEMPTY, "directory not empty");
  {
    // Belt and braces: the entry count is kept exact, but never lose a tree to a bad count.
    auto it = db_->Iterate(schema::DirentPrefix(d.ino));
    it->Seek();
    if (it->Valid()) return Status::Error(ENOTEMPTY, "directory not empty");
  }
  const int64_t now = internal::NowNs();
  prec.size -= std::min<uint64_t>(prec.size, 1);
  prec.nlink -= std::min<uint32_t>(prec.nlink, 1);
  prec.mtime_ns = prec.ctime_ns = now;
  auto scope = BeginCommit();
  rocksdb::WriteBatch batch;
  internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
  QCFS_RETURN_IF_ERROR(vb.Delete(schema::DirentKey(parent, name)).status());
  QCFS_RETURN_IF_ERROR(PutInode(&vb, parent, prec));
  QCFS_RETURN_IF_ERROR(DropLink(&vb, d.ino, &rec, now, name, parent));
  if (pstate) pstate->rec = prec;
  return Status::Ok();
}

Status Volume::Rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                      unsigned flags) {
  QCFS_RETURN_IF_ERROR(CheckWritable());
  if (IsView(parent) || IsView(new_parent)) return ReadOnlyView();
  QCFS_RETURN_IF_ERROR(CheckReserved(new_parent, new_name));
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) return Status::Error(EINVAL, "unsupported rename flags");
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) return Status::Error(EINVAL, "conflicting rename flags");
  if (name == "." || name == ".." || new_name == "." || new_name == "..") {
    return Status::Error(EBUSY, "cannot rename '.' or '..'");
  }
  QCFS_RETURN_IF_ERROR(ValidateName(new_name));
  if (name.size() > kMaxNameLength) return Status::Error(ENAMETOOLONG, "name too long");
  std::lock_guard ns(ns_mu_);
  QCFS_ASSIGN_OR_RETURN(DirentRecord src, LookupDirent(parent, name));
  std::optional<DirentRecord> dst;
  {
    auto r = LookupDirent(new_parent, new_name);
    if (r.ok()) dst = *r;
    else if (r.status().code() != ENOENT) return r.status();
  }
  if ((flags & RENAME_NOREPLACE) && dst) return Status::Errorf(EEXIST, "'{}' exists", new_name);
  if ((flags & RENAME_EXCHANGE) && !dst) return Status::Errorf(ENOENT, "'{}' does not exist", new_name);
  if (dst && dst->ino == src.ino) return Status::Ok();  // two names of one file: nothing to do

  std::vector<uint64_t> inos = {parent, new_parent, src.ino};
  if (dst) inos.push_back(dst->ino);
  auto locks = LockInodes(inos);

  // Records of everything involved; parent == new_parent shares one record.
  std::map<uint64_t, InodeRecord> recs;
  for (uint64_t ino : inos) {
    if (recs.count(ino)) continue;
    InodeRef st = FindState(ino);
    if (st) recs[ino] = st->rec;
    else { QCFS_ASSIGN_OR_RETURN(recs[ino], LoadRecord(ino)); }
  }
  InodeRecord& srec = recs[src.ino];
  const bool src_dir = S_ISDIR(srec.mode);
  if (!S_ISDIR(recs[new_parent].mode)) return Status::Error(ENOTDIR, "target parent is not a directory");
  if (recs[new_parent].nlink == 0) return Status::Error(ENOENT, "target directory was removed");

  // A directory cannot move below itself.
  auto is_below = [&](uint64_t dir, uint64_t ancestor) -> Result<bool> {
    uint64_t cur = dir;
    for (int depth = 0; depth < 100000; ++depth) {
      if (cur == ancestor) return true;
      if (cur == kRootIno) return false;
      auto it = recs.find(cur);
      uint64_t up;
      if (it != recs.end()) up = it->second.parent;
      else { QCFS_ASSIGN_OR_RETURN(InodeRecord r, LoadRecord(cur)); up = r.parent; }
      if (up == cur) return false;
      cur = up;
    }
    return Status::Error(ELOOP, "directory tree is too deep or has a cycle; run qcfs check");
  };
  if (src_dir && parent != new_parent) {
    QCFS_ASSIGN_OR_RETURN(bool below, is_below(new_parent, src.ino));
    if (below) return Status::Error(EINVAL, "cannot move a directory into itself");
  }
  const int64_t now = internal::NowNs();
  auto scope = BeginCommit();
  rocksdb::WriteBatch batch;
  internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
  std::string v;
  // An inode's primary name follows it when that is the name that moves.
  auto move_name = [](InodeRecord& r, uint64_t from_dir, std::string_view from, uint64_t to_dir, std::string_view to) {
    if (S_ISDIR(r.mode) || (r.parent == from_dir && r.name == from)) {
      r.parent = to_dir;
      r.name.assign(to);
    }
  };

  if (flags & RENAME_EXCHANGE) {
    InodeRecord& drec = recs[dst->ino];
    const bool dst_dir = S_ISDIR(drec.mode);
    if (dst_dir && parent != new_parent) {
      QCFS_ASSIGN_OR_RETURN(bool below, is_below(parent, dst->ino));
      if (below) return Status::Error(EINVAL, "cannot move a directory into itself");
    }
    DirentRecord{vb.epoch(), dst->ino, dst->type}.EncodeTo(&v);
    QCFS_RETURN_IF_ERROR(vb.Put(schema::DirentKey(parent, name), v).status());
    v.clear();
    DirentRecord{vb.epoch(), src.ino, src.type}.EncodeTo(&v);
    QCFS_RETURN_IF_ERROR(vb.Put(schema::DirentKey(new_parent, new_name), v).status());
    if (parent != new_parent) {
      if (src_dir) { recs[parent].nlink--; recs[new_parent].nlink++; }
      if (dst_dir) { recs[new_parent].nlink--; recs[parent].nlink++; }
    }
    move_name(srec, parent, name, new_parent, new_name);
    move_name(drec, new_parent, new_name, parent, name);
    srec.ctime_ns = now;
    drec.ctime_ns = now;
  } else {
    if (dst) {
      InodeRecord& drec = recs[dst->ino];
      const bool dst_dir = S_ISDIR(drec.mode);
      if (src_dir && !dst_dir) return Status::Error(ENOTDIR, "cannot replace a non-directory with a directory");
      if (!src_dir && dst_dir) return Status::Error(EISDIR, "cannot replace a directory with a non-directory");
      if (dst_dir) {
        if (drec.size != 0) return Status::Error(ENOTEMPTY, "target directory not empty");
        auto it = db_->Iterate(schema::DirentPrefix(dst->ino));
        it->Seek();
        if (it->Valid()) return Status::Error(ENOTEMPTY, "target directory not empty");
        recs[new_parent].nlink--;
      }
      recs[new_parent].size -= std::min<uint64_t>(recs[new_parent].size, 1);
    }
    QCFS_RETURN_IF_ERROR(vb.Delete(schema::DirentKey(parent, name)).status());
    DirentRecord{vb.epoch(), src.ino, src.type}.EncodeTo(&v);
    QCFS_RETURN_IF_ERROR(vb.Put(schema::DirentKey(new_parent, new_name), v).status());
    recs[parent].size -= std::min<uint64_t>(recs[parent].size, 1);
    recs[new_parent].size += 1;
    if (src_dir && parent != new_parent) {
      recs[parent].nlink--;
      recs[new_parent].nlink++;
    }
    move_name(srec, parent, name, new_parent, new_name);
    srec.ctime_ns = now;
  }
  recs[parent].mtime_ns = recs[parent].ctime_ns = now;
  recs[new_parent].mtime_ns = recs[new_parent].ctime_ns = now;

  // Persist every record but a replaced target (DropLink handles it).
  std::optional<uint64_t> replaced;
  if (dst && !(flags & RENAME_EXCHANGE)) replaced = dst->ino;
  for (auto& [ino, rec] : recs) {
    if (replaced && ino == *replaced) continue;
    QCFS_RETURN_IF_ERROR(PutInode(&vb, ino, rec));
  }
  if (replaced) {
    InodeRecord drec = recs[*replaced];
    QCFS_RETURN_IF_ERROR(DropLink(&vb, *replaced, &drec, now, new_name, new_parent));  // writes the batch
  } else {
    QCFS_RETURN_IF_ERROR(WriteBatch(&batch));
  }
  for (auto& [ino, rec] : recs) {
    if (replaced && ino == *replaced) continue;
    if (InodeRef st = FindState(ino)) {
      st->rec.nlink = rec.nlink;
      st->rec.size = S_ISDIR(rec.mode) ? rec.size : st->rec.size;
      st->rec.parent = rec.parent;
      st->rec.name = rec.name;
      st->rec.mtime_ns = rec.mtime_ns;
      st->rec.ctime_ns = rec.ctime_ns;
    }
  }
  return Status::Ok();
}

Status Volume::Purge(uint64_t ino) {
  std::lock_guard ns(ns_mu_);
  auto locks = LockInodes({ino});
  InodeRef state = FindState(ino);
  if (state && state->open_count > 0) return Status::Ok();
  InodeRecord rec;
  if (state) rec = state->rec;
  else {
    auto r = LoadRecord(ino);
    if (!r.ok()) {
      if (r.status().code() != ENOENT) return r.status();
      rocksdb::WriteBatch batch;
      batch.Delete(Sl(schema::OrphanKey(ino)));
      return WriteBatch(&batch);
    }
    rec = *r;
  }
  if (rec.nlink > 0) return Status::Ok();
  auto scope = BeginCommit();
  rocksdb::WriteBatch batch;
  internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
  batch.Delete(Sl(schema::OrphanKey(ino)));
  return DropLink(&vb, ino, &rec, internal::NowNs(), "", 0);
}

Status Volume::PurgeOrphans() {
  std::vector<uint64_t> orphans;
  auto it = db_->Iterate(std::string(1, schema::kOrphanPrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    uint64_t ino;
    if (schema::ParseU64Suffix(it->key_suffix(), &ino)) orphans.push_back(ino);
  }
  QCFS_RETURN_IF_ERROR(it->status());
  for (uint64_t ino : orphans) QCFS_RETURN_IF_ERROR(Purge(ino));
  if (!orphans.empty()) Log(LogLevel::kInfo, "released {} deleted files that were open at the last unmount", orphans.size());
  return Status::Ok();
}

// ---------------------------------------------------------------- attributes

Result<Attr> Volume::SetAttr(uint64_t ino, const SetAttrRequest& req) {
  QCFS_RETURN_IF_ERROR(CheckWritable());
  if (IsView(ino)) return ReadOnlyView();
  const int64_t now = internal::NowNs();
  if (req.size.has_value()) {
    QCFS_ASSIGN_OR_RETURN(InodeRef inode, Acquire(ino));
    Status s;
    {
      std::unique_lock stripe(StripeFor(ino));
      if (S_ISDIR(inode->rec.mode)) s = Status::Error(EISDIR, "is a directory");
      else if (!S_ISREG(inode->rec.mode)) s = Status::Error(EINVAL, "not a regular file");
    }
    if (s.ok()) s = Truncate(inode, *req.size, now);
    MaybeDropState(inode);
    QCFS_RETURN_IF_ERROR(s);
  }
  std::lock_guard stripe(StripeFor(ino));
  InodeRef state = FindState(ino);
  InodeRecord rec;
  if (state) rec = state->rec; else { QCFS_ASSIGN_OR_RETURN(rec, LoadRecord(ino)); }
  bool changed = false;
  if (req.mode) { rec.mode = (rec.mode & S_IFMT) | (*req.mode & 07777); changed = true; }
  if (req.uid) { rec.uid = *req.uid; changed = true; }
  if (req.gid) { rec.gid = *req.gid; changed = true; }
  if (req.atime_ns) { rec.atime_ns = *req.atime_ns == SetAttrRequest::kNow ? now : *req.atime_ns; changed = true; }
  if (req.mtime_ns) { rec.mtime_ns = *req.mtime_ns == SetAttrRequest::kNow ? now : *req.mtime_ns; changed = true; }
  // chmod rewrites a stored access ACL to match (posix_acl_chmod).
  std::optional<std::string> acl_old, acl_new;  // the stored record; the new ACL
  const std::string acl_key = schema::XattrKey(ino, internal::kAccessAclName);
  if (req.mode && (rec.flags & InodeRecord::kInodeMayHaveXattrs)) {
    QCFS_ASSIGN_OR_RETURN(acl_old, db_->Get(acl_key));
    if (acl_old.has_value()) {
      schema::XattrRecord x;
      if (!schema::XattrRecord::Decode(*acl_old, &x)) return Status::Error(EIO, "malformed attribute record");
      auto acl = internal::PosixAcl::Parse(x.value);
      if (!acl.ok()) return Status::Errorf(EIO, "inode {}: access ACL: {}", ino, acl.status().message());
      internal::ChmodAcl(&*acl, rec.mode);
      acl_new = acl->Encode();
    }
  }
  if (changed) {
    rec.ctime_ns = req.ctime_ns ? (*req.ctime_ns == SetAttrRequest::kNow ? now : *req.ctime_ns) : now;
    // cp -a, tar and rsync set times, owner and mode on the file they just
    // wrote: those ride with its flush instead of a batch each.
    if (!acl_new && DeferRecord(state, rec)) return ToAttr(ino, rec, state.get());
    auto scope = BeginCommit();
    rocksdb::WriteBatch batch;
    internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
    if (acl_new) {
      std::string xv;
      schema::XattrRecord{vb.epoch(), *acl_new}.EncodeTo(&xv);
      QCFS_RETURN_IF_ERROR(vb.Put(acl_key, xv, &acl_old).status());
    }
    QCFS_RETURN_IF_ERROR(PutInode(&vb, ino, rec));
    QCFS_RETURN_IF_ERROR(WriteBatch(&batch));
    if (state) {
      state->rec = rec;
      state->attr_dirty = false;
    }
  }
  return ToAttr(ino, rec, state.get());
}

// ---------------------------------------------------------------- xattrs

namespace {

// The namespaces Linux file systems know: user., trusted., security., and
// system. for POSIX ACLs. Another prefix is EOPNOTSUPP; a bare prefix EINVAL.
Status ValidateXattrName(std::string_view name) {
  if (name.empty() || name.size() > 255) return Status::Error(ERANGE, "invalid attribute name length");
  for (std::string_view ns : {"user.", "trusted.", "security."}) {
    if (!name.starts_with(ns)) continue;
    if (name.size() == ns.size()) return Status::Errorf(EINVAL, "attribute name '{}' has no name after its namespace", name);
    return Status::Ok();
  }
  if (name == "system.posix_acl_access" || name == "system.posix_acl_default") return Status::Ok();
  return Status::Errorf(EOPNOTSUPP, "attribute namespace of '{}' is not supported", name);
}

}  // namespace

Result<bool> Volume::MayHaveXattrs(uint64_t ino) {
  {
    std::lock_guard stripe(StripeFor(ino));
    InodeRef state = FindState(ino);
    if (state && !state->stale && !state->purged) return (state->rec.flags & InodeRecord::kInodeMayHaveXattrs) != 0;
  }
  QCFS_ASSIGN_OR_RETURN(InodeRecord rec, LoadRecord(ino));
  return (rec.flags & InodeRecord::kInodeMayHaveXattrs) != 0;
}

Status Volume::SetXattr(uint64_t ino, std::string_view name, std::string_view value, int flags,
                        const Caller& caller) {
  QCFS_RETURN_IF_ERROR(ValidateXattrName(name));
  QCFS_RETURN_IF_ERROR(CheckWritable());
  if (IsView(ino)) return ReadOnlyView();
  if (value.size() > kMaxXattrValue) return Status::Error(E2BIG, "attribute value too large");
  const bool is_access_acl = name == internal::kAccessAclName;
  const bool is_default_acl = name == internal::kDefaultAclName;
  std::optional<internal::PosixAcl> acl;
  if (is_access_acl || is_default_acl) { QCFS_ASSIGN_OR_RETURN(acl, internal::PosixAcl::Parse(value)); }
  std::lock_guard stripe(StripeFor(ino));
  InodeRef state = FindState(ino);
  if (state && state->purged) return Status::Errorf(ENOENT, "inode {} was deleted", ino);
  if (state && state->stale) state = nullptr;  // replaced by a restore: the record says what is there now
  InodeRecord rec;
  if (state) rec = state->rec; else { QCFS_ASSIGN_OR_RETURN(rec, LoadRecord(ino)); }
  std::string key = schema::XattrKey(ino, name);
  // An inode that never had an attribute has none to look up (cp -a sets an ACL on every file).
  std::optional<std::string> existing;
  if (rec.flags & InodeRecord::kInodeMayHaveXattrs) { QCFS_ASSIGN_OR_RETURN(existing, db_->Get(key)); }
  if ((flags & XATTR_CREATE) && existing.has_value()) return Status::Error(EEXIST, "attribute exists");
  if ((flags & XATTR_REPLACE) && !existing.has_value()) return Status::Error(ENODATA, "no such attribute");
  // An access ACL is how `cp -a` and `setfacl` set a mode, as on ext4:
  // the mode changes, and an ACL the mode expresses is not kept beside it.
  bool store = true;
  if (is_default_acl) {
    if (!S_ISDIR(rec.mode)) {
      if (acl->entries.empty()) return Status::Ok();
      return Status::Error(EACCES, "only directories have a default ACL");
    }
    if (caller.uid != 0 && caller.uid != rec.uid) return Status::Error(EPERM, "only the owner may set an ACL");
    store = !acl->entries.empty();  // an empty default ACL removes it
  } else if (is_access_acl) {
    if (caller.uid != 0 && caller.uid != rec.uid) return Status::Error(EPERM, "only the owner may set an ACL");
    if (!acl->entries.empty()) {
      rec.mode = (rec.mode & ~0777u) | acl->ModeBits();
      const bool in_group = caller.uid == 0 || caller.gid == rec.gid ||
                            std::find(caller.groups.begin(), caller.groups.end(), rec.gid) != caller.groups.end();
      if (!in_group) rec.mode &= ~static_cast<uint32_t>(S_ISGID);
    }
    store = !acl->entries.empty() && !acl->EquivalentToMode();
  }
  rec.ctime_ns = internal::NowNs();
  // A mode set through an ACL on a file being written (cp -a) rides with its flush, like chmod.
  if (is_access_acl && !store && !existing.has_value() && DeferRecord(state, rec)) return Status::Ok();
  auto scope = BeginCommit();
  rocksdb::WriteBatch batch;
  internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
  if (store) {
    std::string v;
    schema::XattrRecord{vb.epoch(), std::string(value)}.EncodeTo(&v);
    QCFS_RETURN_IF_ERROR(vb.Put(key, v, &existing).status());
    rec.flags |= InodeRecord::kInodeMayHaveXattrs;
  } else if (existing.has_value()) {
    QCFS_RETURN_IF_ERROR(vb.Delete(key, &existing).status());
  }
  QCFS_RETURN_IF_ERROR(PutInode(&vb, ino, rec));
  QCFS_RETURN_IF_ERROR(WriteBatch(&batch));
  if (state) state->rec = rec;
  return Status::Ok();
}

Result<std::string> Volume::GetXattr(uint64_t ino, std::string_view name) {
  QCFS_RETURN_IF_ERROR(ValidateXattrName(name));
  if (IsView(ino)) {
    if (ino == kSnapshotsDirIno) return Status::Error(ENODATA, "no such attribute");
    QCFS_ASSIGN_OR_RETURN(View v, ResolveView(ino));
    QCFS_ASSIGN_OR_RETURN(auto value, GetAt(schema::XattrKey(v.ino, name), v.epoch));
    schema::XattrRecord x;
    if (!value.has_value()) return Status::Error(ENODATA, "no such attribute");
    if (!schema::XattrRecord::Decode(*value, &x)) return Status::Error(EIO, "malformed attribute record");
    return std::move(x.value);
  }
  QCFS_ASSIGN_OR_RETURN(bool may_have, MayHaveXattrs(ino));  // ENOENT for a missing inode
  if (!may_have) return Status::Error(ENODATA, "no such attribute");
  QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(schema::XattrKey(ino, name)));
  if (!value.has_value()) return Status::Error(ENODATA, "no such attribute");
  schema::XattrRecord x;
  if (!schema::XattrRecord::Decode(*value, &x)) return Status::Error(EIO, "malformed attribute record");
  return std::move(x.value);
}

Result<std::vector<std::string>> Volume::ListXattr(uint64_t ino) {
  if (IsView(ino)) {
    std::vector<std::string> names;
    if (ino == kSnapshotsDirIno) return names;
    QCFS_ASSIGN_OR_RETURN(View v, ResolveView(ino));
    Status inner;
    QCFS_RETURN_IF_ERROR(VersionedNames(schema::XattrPrefix(v.ino), "", [&](std::string_view name) {
      auto value = GetAt(schema::XattrKey(v.ino, name), v.epoch);
      if (!value.ok()) {
        inner = value.status();
        return false;
      }
      if (value->has_value()) names.emplace_back(name);
      return true;
    }));
    QCFS_RETURN_IF_ERROR(inner);
    return names;
  }
  QCFS_ASSIGN_OR_RETURN(bool may_have, MayHaveXattrs(ino));  // ENOENT for a missing inode
  std::vector<std::string> names;
  if (!may_have) return names;
  auto it = db_->Iterate(schema::XattrPrefix(ino));
  for (it->Seek(); it->Valid(); it->Next()) names.emplace_back(it->key_suffix());
  QCFS_RETURN_IF_ERROR(it->status());
  return names;
}

Status Volume::RemoveXattr(uint64_t ino, std::string_view name) {
  QCFS_RETURN_IF_ERROR(ValidateXattrName(name));
  QCFS_RETURN_IF_ERROR(CheckWritable());
  if (IsView(ino)) return ReadOnlyView();
  std::lock_guard stripe(StripeFor(ino));
  InodeRef state = FindState(ino);
  InodeRecord rec;
  if (state) rec = state->rec; else { QCFS_ASSIGN_OR_RETURN(rec, LoadRecord(ino)); }
  std::string key = schema::XattrKey(ino, name);
  QCFS_ASSIGN_OR_RETURN(auto existing, db_->Get(key));
  if (!existing.has_value()) return Status::Error(ENODATA, "no such attribute");
  rec.ctime_ns = internal::NowNs();
  auto scope = BeginCommit();
  rocksdb::WriteBatch batch;
  internal::VersionedBatch vb(db_.get(), &batch, scope.epochs);
  QCFS_RETURN_IF_ERROR(vb.Delete(key, &existing).status());
  QCFS_RETURN_IF_ERROR(PutInode(&vb, ino, rec));
  QCFS_RETURN_IF_ERROR(WriteBatch(&batch));
  if (state) state->rec = rec;
  return Status::Ok();
}

// ---------------------------------------------------------------- volume

uint64_t Volume::AvailableBytes() const { return store_->Usage().available_bytes; }

Result<struct statvfs> Volume::StatFs() {
  StoreUsage u = store_->Usage();
  struct statvfs st {};
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  st.f_blocks = u.capacity_bytes / 4096;
  uint64_t used = u.live_bytes + u.reserved_bytes;
  st.f_bfree = used >= u.capacity_bytes ? 0 : (u.capacity_bytes - used) / 4096;
  st.f_bavail = u.available_bytes / 4096;
  uint64_t files;
  {
    std::lock_guard lock(ns_mu_);
    files = inode_count_;
  }
  st.f_files = std::max<uint64_t>(files, 1ull << 32);
  st.f_ffree = st.f_files - files;
  st.f_favail = st.f_ffree;
  st.f_namemax = kMaxNameLength;
  st.f_fsid = 0;
  std::lock_guard sb_lock(sb_mu_);
  std::memcpy(&st.f_fsid, sb_.uuid.data(), sizeof(st.f_fsid));
  return st;
}

Superblock Volume::superblock() const {
  std::lock_guard lock(sb_mu_);
  return sb_;
}

Result<TrimResult> Volume::Trim() {
  if (options_.read_only) return Status::Error(EROFS, "the volume is mounted read-only");
  std::lock_guard admin(admin_mu_);
  TrimResult r;
  QCFS_RETURN_IF_ERROR(Sync());
  // Each partly used segment once: its live chunks move, the rest is freed.
  const uint64_t segments = superblock().segment_count;
  QCFS_ASSIGN_OR_RETURN(r.segments_cleaned, store_->Clean(segments, segments));
  QCFS_RETURN_IF_ERROR(db_->SyncWal());
  QCFS_RETURN_IF_ERROR(store_->SyncFreed());
  QCFS_RETURN_IF_ERROR(space_->Sync());
  QCFS_ASSIGN_OR_RETURN(r.trimmed_bytes, space_->TrimFree());
  return r;
}

Result<ResizeResult> Volume::Resize(uint64_t size) {
  if (options_.read_only) return Status::Error(EROFS, "the volume is mounted read-only");
  std::lock_guard admin(admin_mu_);
  Superblock sb = superblock();
  ResizeResult r{sb.device_size, sb.device_size, sb.segment_count, sb.segment_count};
  if (size != 0 && size < sb.device_size) {
    return Status::Errorf(EINVAL, "a QCFS volume cannot shrink: it spans {} ({} bytes), {} asked", FormatSize(sb.device_size),
                          sb.device_size, FormatSize(size));
  }
  QCFS_ASSIGN_OR_RETURN(uint64_t device_size, device_->Grow(size));
  const uint64_t target = size != 0 ? size : device_size;
  const uint64_t count = (target - sb.data_offset) / sb.segment_size;
  if (count > UINT32_MAX) {
    return Status::Errorf(EFBIG, "{} would need {} segments of {}; the format holds at most {}", FormatSize(target),
                          count, FormatSize(sb.segment_size), UINT32_MAX);
  }
  if (count <= sb.segment_count) return r;  // not even one more segment fits
  sb.device_size = target;
  sb.segment_count = count;
  // The superblock first: once it is durable the new segments exist, and
  // only then are they handed out (a crash in between leaves them free).
  QCFS_RETURN_IF_ERROR(WriteSuperblock(device_.get(), sb));
  store_->Grow(count);
  QCFS_RETURN_IF_ERROR(space_->Grow(count));
  {
    std::lock_guard lock(sb_mu_);
    sb_ = sb;
  }
  r.new_bytes = target;
  r.new_segments = count;
  return r;
}

Result<VolumeInfo> Volume::Info() {
  VolumeInfo info;
  info.device = device_->path();
  MetaFsUsage m = space_->Usage();
  Superblock sb = superblock();
  info.uuid = sb.UuidString();
  info.chunk_size = sb.chunk_size;
  info.device_bytes = sb.device_size;
  info.compression = compression_.ToString();
  info.usage = store_->Usage();
  {
    std::lock_guard lock(ns_mu_);
    info.files = inode_count_;
  }
  {
    std::lock_guard lock(flush_mu_);
    info.dirty_bytes = buffered_bytes_;
  }
  {
    std::lock_guard lock(snap_mu_);
    info.snapshots = snapshots_.size();
  }
  info.meta_bytes = m.file_bytes;
  info.meta_segments = m.meta_segments;
  return info;
}

}  // namespace qcfs
