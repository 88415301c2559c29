// Volume: snapshots. Creating one ends an epoch (O(1)); the versions it
// sees are kept as history keys as the live tree changes (versioned.h);
// diff, delete and restore walk the journal between two epochs, so they
// cost in proportion to what changed. Read-only views of snapshots are
// served under .snapshots.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <set>

#include "qcfs/core/coding.h"
#include "qcfs/core/log.h"
#include "qcfs/fs/internal/inode.h"
#include "qcfs/fs/internal/time.h"
#include "qcfs/fs/internal/versioned.h"
#include "qcfs/fs/volume.h"

namespace qcfs {

using internal::Inode;
using schema::DirentRecord;
using schema::ExtentRecord;
using schema::InodeRecord;
using schema::PendingOp;
using schema::SnapshotRecord;

namespace {

constexpr uint8_t kOpDelete = 1;
constexpr uint8_t kOpRestore = 2;
constexpr size_t kKeysPerBatch = 512;

rocksdb::Slice Sl(const std::string& s) { return rocksdb::Slice(s); }

// The part of a versioned value after its epoch: equal payloads are the same version.
std::string_view Payload(std::string_view value) {
  Decoder d(value);
  uint64_t epoch;
  if (!d.Varint(&epoch)) return value;
  return value.substr(value.size() - d.remaining());
}

// The value stamped with another epoch.
std::string Restamp(std::string_view value, uint64_t epoch) {
  std::string out;
  Encoder(&out).Varint(epoch);
  out.append(Payload(value));
  return out;
}

bool SamePayload(const std::optional<std::string>& a, const std::optional<std::string>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a.has_value() || Payload(*a) == Payload(*b);
}

// The inode a versioned key belongs to (the parent, for an entry).
uint64_t KeyInode(std::string_view key) {
  if (key.size() < 9) return 0;
  return GetBig64(key.data() + 1);
}

std::string TimestampName(std::string_view prefix) {
  time_t now = ::time(nullptr);
  struct tm tm {};
  ::gmtime_r(&now, &tm);
  char buf[32];
  ::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return fmt::format("{}-{}", prefix, buf);
}

}  // namespace

Status ValidateSnapshotName(std::string_view name) {
  if (name.empty()) return Status::Error(EINVAL, "a snapshot needs a name");
  if (name.size() > kMaxNameLength) {
    return Status::Errorf(ENAMETOOLONG, "snapshot name is longer than {} bytes", kMaxNameLength);
  }
  if (name == "." || name == "..") return Status::Errorf(EINVAL, "'{}' cannot name a snapshot", name);
  if (name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return Status::Errorf(EINVAL, "snapshot name '{}' contains '/'", name);
  }
  return Status::Ok();
}

// ---------------------------------------------------------------- loading

Status Volume::LoadSnapshots() {
  std::lock_guard lock(snap_mu_);
  snapshots_.clear();
  auto it = db_->Iterate(std::string(1, schema::kSnapshotPrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    uint64_t id;
    SnapshotRecord rec;
    if (!schema::ParseU64Suffix(it->key_suffix(), &id) || !SnapshotRecord::Decode(it->value(), &rec)) {
      return Status::Error(EUCLEAN, "malformed snapshot record; run qcfs check");
    }
    if (rec.state == 0) snapshots_[id] = rec;
  }
  QCFS_RETURN_IF_ERROR(it->status());
  latest_snapshot_ = 0;
  for (auto& [id, rec] : snapshots_) latest_snapshot_ = std::max(latest_snapshot_, rec.epoch);
  return Status::Ok();
}

Status Volume::ResumePending() {
  QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(schema::SystemKey(schema::kPendingName)));
  if (!value.has_value()) return Status::Ok();
  PendingOp op;
  if (!PendingOp::Decode(*value, &op)) return Status::Error(EUCLEAN, "malformed pending snapshot operation");
  rocksdb::WriteBatch done;
  done.Delete(Sl(schema::SystemKey(schema::kPendingName)));
  if (op.kind == kOpDelete) {
    Log(LogLevel::kInfo, "finishing the deletion of snapshot {} interrupted by a crash", op.snapshot);
    QCFS_RETURN_IF_ERROR(RunDelete(op));
    done.Delete(Sl(schema::SnapshotKey(op.snapshot)));
  } else if (op.kind == kOpRestore) {
    Log(LogLevel::kInfo, "finishing the restore of snapshot {} interrupted by a crash", op.snapshot);
    std::vector<uint64_t> inodes;
    std::vector<std::pair<uint64_t, std::string>> entries;
    std::lock_guard ns(ns_mu_);
    QCFS_RETURN_IF_ERROR(RunRestore(op, &inodes, &entries));
    std::lock_guard snaps(snap_mu_);
    auto it = snapshots_.find(op.snapshot);
    if (it != snapshots_.end()) inode_count_ = it->second.files;
    PutVolumeState(&done);
  }
  return db_->Write(&done, true);
}

std::optional<std::pair<uint64_t, SnapshotRecord>> Volume::FindSnapshot(std::string_view name) {
  std::lock_guard lock(snap_mu_);
  for (auto& [id, rec] : snapshots_) {
    if (rec.name == name) return std::make_pair(id, rec);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------- reading versions

Result<std::optional<std::string>> Volume::GetAt(std::string_view key, uint64_t epoch) {
  QCFS_ASSIGN_OR_RETURN(auto live, db_->Get(key));
  if (live.has_value()) {
    uint64_t born = 0;
    if (!schema::ValueEpoch(*live, &born)) return Status::Error(EIO, "malformed versioned record; run qcfs check");
    if (born <= epoch) return live;
  }
  // The newest kept version born at or before `epoch`, if it still lived then.
  auto it = db_->Iterate(schema::HistoryPrefix(key));
  std::string from;
  PutBig64(&from, ~epoch);
  it->Seek(from);
  if (!it->Valid()) {
    QCFS_RETURN_IF_ERROR(it->status());
    return std::optional<std::string>();
  }
  uint64_t died = 0;
  std::string_view value;
  if (!schema::DecodeHistory(it->value(), &died, &value)) {
    return Status::Error(EIO, "malformed history record; run qcfs check");
  }
  if (died <= epoch) return std::optional<std::string>();
  return std::optional<std::string>(std::string(value));
}

Result<InodeRecord> Volume::RecordAt(uint64_t ino, uint64_t epoch) {
  QCFS_ASSIGN_OR_RETURN(auto value, GetAt(schema::InodeKey(ino), epoch));
  if (!value.has_value()) return Status::Errorf(ENOENT, "inode {} did not exist then", ino);
  InodeRecord rec;
  if (!InodeRecord::Decode(*value, &rec)) return Status::Errorf(EIO, "inode {}: malformed record", ino);
  return rec;
}

Status Volume::VersionedNames(const std::string& prefix, std::string_view after,
                              const std::function<bool(std::string_view name)>& fn) {
  // Live keys "prefix name" and kept versions "H prefix name \0 ~epoch",
  // merged in name order.
  auto live = db_->Iterate(prefix);
  live->Seek(after);
  if (!after.empty() && live->Valid() && live->key_suffix() == after) live->Next();
  auto hist = db_->Iterate(std::string(1, schema::kHistoryPrefix) + prefix);
  std::string hfrom(after);
  if (!after.empty()) hfrom.push_back('\x01');  // past every version of `after`
  hist->Seek(hfrom);
  auto hist_name = [&]() { return hist->key_suffix().substr(0, hist->key_suffix().size() - 9); };
  for (;;) {
    bool lv = live->Valid(), hv = hist->Valid();
    if (!lv && !hv) break;
    std::string name;
    if (lv && (!hv || live->key_suffix() <= hist_name())) name = std::string(live->key_suffix());
    else name = std::string(hist_name());
    if (!fn(name)) return Status::Ok();
    while (live->Valid() && live->key_suffix() == name) live->Next();
    while (hist->Valid() && hist_name() == name) hist->Next();
  }
  QCFS_RETURN_IF_ERROR(live->status());
  return hist->status();
}

// ---------------------------------------------------------------- views

Result<Volume::View> Volume::ResolveView(uint64_t view_ino) {
  View v;
  v.snapshot = view_ino >> kViewShift;
  v.ino = view_ino & (kLiveInoLimit - 1);
  std::lock_guard lock(snap_mu_);
  auto it = snapshots_.find(v.snapshot);
  if (it == snapshots_.end()) return Status::Errorf(ESTALE, "snapshot {} no longer exists", v.snapshot);
  v.epoch = it->second.epoch;
  return v;
}

Result<Attr> Volume::ViewGetAttr(uint64_t view_ino) {
  if (view_ino == kSnapshotsDirIno) {
    Attr a;
    a.ino = kSnapshotsDirIno;
    a.mode = S_IFDIR | 0555;
    std::lock_guard lock(snap_mu_);
    a.nlink = 2 + static_cast<uint32_t>(snapshots_.size());
    a.size = snapshots_.size();
    a.blocks = 8;
    a.mtime_ns = a.ctime_ns = a.atime_ns = a.btime_ns = superblock().created_ns;
    for (auto& [id, rec] : snapshots_) a.mtime_ns = a.ctime_ns = std::max(a.mtime_ns, rec.created_ns);
    return a;
  }
  QCFS_ASSIGN_OR_RETURN(View v, ResolveView(view_ino));
  QCFS_ASSIGN_OR_RETURN(InodeRecord rec, RecordAt(v.ino, v.epoch));
  Attr a = ToAttr(view_ino, rec, nullptr);
  a.ino = view_ino;
  return a;
}

Result<Attr> Volume::ViewLookup(uint64_t parent, std::string_view name) {
  if (parent == kSnapshotsDirIno) {
    if (name == "." ) return ViewGetAttr(kSnapshotsDirIno);
    if (name == "..") return GetAttr(kRootIno);
    auto snap = FindSnapshot(name);
    if (!snap) return Status::Errorf(ENOENT, "no snapshot named '{}'", name);
    return ViewGetAttr(ViewIno(snap->first, kRootIno));
  }
  QCFS_ASSIGN_OR_RETURN(View v, ResolveView(parent));
  if (name == ".") return ViewGetAttr(parent);
  if (name == "..") {
    if (v.ino == kRootIno) return ViewGetAttr(kSnapshotsDirIno);
    QCFS_ASSIGN_OR_RETURN(InodeRecord rec, RecordAt(v.ino, v.epoch));
    return ViewGetAttr(ViewIno(v.snapshot, rec.parent));
  }
  QCFS_ASSIGN_OR_RETURN(auto value, GetAt(schema::DirentKey(v.ino, name), v.epoch));
  if (!value.has_value()) return Status::Errorf(ENOENT, "'{}' not found", name);
  DirentRecord d;
  if (!DirentRecord::Decode(*value, &d)) return Status::Error(EIO, "malformed entry; run qcfs check");
  return ViewGetAttr(ViewIno(v.snapshot, d.ino));
}

Status Volume::ViewReadDir(uint64_t ino, std::string_view after, const std::function<bool(const DirEntry&)>& fn) {
  if (ino == kSnapshotsDirIno) {
    std::map<std::string, uint64_t> names;
    {
      std::lock_guard lock(snap_mu_);
      for (auto& [id, rec] : snapshots_) names[rec.name] = id;
    }
    for (auto it = names.upper_bound(std::string(after)); it != names.end(); ++it) {
      if (!fn(DirEntry{it->first, ViewIno(it->second, kRootIno), DT_DIR})) break;
    }
    return Status::Ok();
  }
  QCFS_ASSIGN_OR_RETURN(View v, ResolveView(ino));
  QCFS_ASSIGN_OR_RETURN(InodeRecord rec, RecordAt(v.ino, v.epoch));
  if (!S_ISDIR(rec.mode)) return Status::Error(ENOTDIR, "not a directory");
  Status inner;
  QCFS_RETURN_IF_ERROR(VersionedNames(schema::DirentPrefix(v.ino), after, [&](std::string_view name) {
    auto value = GetAt(schema::DirentKey(v.ino, name), v.epoch);
    if (!value.ok()) {
      inner = value.status();
      return false;
    }
    if (!value->has_value()) return true;  // not there at the time
    DirentRecord d;
    if (!DirentRecord::Decode(**value, &d)) {
      inner = Status::Error(EIO, "malformed entry; run qcfs check");
      return false;
    }
    return fn(DirEntry{std::string(name), ViewIno(v.snapshot, d.ino), d.type});
  }));
  return inner;
}

Result<size_t> Volume::ViewRead(uint64_t ino, uint64_t offset, std::span<std::byte> out) {
  QCFS_ASSIGN_OR_RETURN(View v, ResolveView(ino));
  QCFS_ASSIGN_OR_RETURN(InodeRecord rec, RecordAt(v.ino, v.epoch));
  if (S_ISDIR(rec.mode)) return Status::Error(EISDIR, "is a directory");
  if (offset >= rec.size || out.empty()) return size_t{0};
  const size_t total = static_cast<size_t>(std::min<uint64_t>(out.size(), rec.size - offset));
  uint64_t pos = offset;
  while (pos < offset + total) {
    const uint64_t index = pos / chunk_size_;
    const size_t in_chunk = static_cast<size_t>(pos % chunk_size_);
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk_size_ - in_chunk, offset + total - pos));
    std::byte* dest = out.data() + (pos - offset);
    QCFS_ASSIGN_OR_RETURN(auto value, GetAt(schema::ExtentKey(v.ino, index), v.epoch));
    ExtentRecord e;
    if (!value.has_value()) {
      std::memset(dest, 0, n);
    } else if (!ExtentRecord::Decode(*value, &e)) {
      return Status::Errorf(EIO, "inode {} chunk {}: malformed extent record", v.ino, index);
    } else {
      auto data = store_->Read(e.fp);
      if (!data.ok()) return Status::Errorf(EIO, "inode {} chunk {}: {}", v.ino, index, data.status().ToString());
      const auto& bytes = **data;
      size_t have = bytes.size() > in_chunk ? std::min(bytes.size() - in_chunk, n) : 0;
      if (have > 0) std::memcpy(dest, bytes.data() + in_chunk, have);
      if (have < n) std::memset(dest + have, 0, n - have);
    }
    pos += n;
  }
  return total;
}

// ---------------------------------------------------------------- create, list

Result<SnapshotInfo> Volume::CreateSnapshot(std::string_view name) {
  QCFS_RETURN_IF_ERROR(ValidateSnapshotName(name));
  QCFS_RETURN_IF_ERROR(CheckWritable());
  std::lock_guard admin(admin_mu_);
  return CreateSnapshotLocked(name);
}

Result<SnapshotInfo> Volume::CreateSnapshotLocked(std::string_view name) {
  if (FindSnapshot(name)) return Status::Errorf(EEXIST, "a snapshot named '{}' exists", name);
  // Everything written before the call belongs to the snapshot.
  QCFS_RETURN_IF_ERROR(Sync());
  std::lock_guard ns(ns_mu_);
  std::unique_lock epoch(epoch_mu_);
  StoreUsage usage = store_->Usage();
  SnapshotRecord rec;
  rec.name.assign(name);
  rec.epoch = state_.current_epoch;
  rec.created_ns = internal::NowNs();
  rec.logical_bytes = usage.stats.referenced_bytes - std::min(usage.stats.referenced_bytes, usage.stats.history_bytes);
  rec.files = inode_count_;
  const uint64_t id = state_.next_snapshot;
  if (id >= 0xffff) return Status::Error(ENOSPC, "snapshot ids are exhausted (65,534 created)");
  rocksdb::WriteBatch batch;
  std::string v;
  rec.EncodeTo(&v);
  batch.Put(Sl(schema::SnapshotKey(id)), Sl(v));
  state_.next_snapshot = id + 1;
  state_.current_epoch += 1;
  PutVolumeState(&batch);
  Status s = WriteBatch(&batch, true);
  if (!s.ok()) {
    state_.current_epoch -= 1;
    return s;
  }
  latest_snapshot_ = rec.epoch;
  {
    std::lock_guard lock(snap_mu_);
    snapshots_[id] = rec;
  }
  epoch.unlock();
  if (options_.on_entry_changed) options_.on_entry_changed(kSnapshotsDirIno, std::string(name));
  SnapshotInfo info{id, rec.name, rec.epoch, rec.created_ns, rec.logical_bytes, rec.files, std::nullopt};
  return info;
}

Result<std::vector<SnapshotInfo>> Volume::ListSnapshots(bool with_exclusive) {
  std::map<uint64_t, std::pair<uint64_t, SnapshotRecord>> by_epoch;
  {
    std::lock_guard lock(snap_mu_);
    for (auto& [id, rec] : snapshots_) by_epoch[rec.epoch] = {id, rec};
  }
  uint64_t current;
  {
    std::shared_lock epoch(epoch_mu_);
    current = state_.current_epoch;
  }
  std::vector<SnapshotInfo> out;
  uint64_t previous = 0;
  for (auto it = by_epoch.begin(); it != by_epoch.end(); ++it) {
    auto& [id, rec] = it->second;
    SnapshotInfo info{id, rec.name, rec.epoch, rec.created_ns, rec.logical_bytes, rec.files, std::nullopt};
    if (with_exclusive) {
      auto next = std::next(it);
      uint64_t to = next == by_epoch.end() ? current : next->first;
      QCFS_ASSIGN_OR_RETURN(info.exclusive_bytes, ExclusiveBytes(rec, previous, to));
    }
    out.push_back(std::move(info));
    previous = rec.epoch;
  }
  return out;
}

Result<uint64_t> Volume::ExclusiveBytes(const SnapshotRecord& rec, uint64_t previous, uint64_t to) {
  // The versions deleting it would free: killed in (epoch, to], born after
  // the previous snapshot. Their chunks are freed when every reference goes.
  std::map<Fingerprint, uint64_t> drops;
  for (uint64_t e = rec.epoch + 1; e <= to; ++e) {
    auto jt = db_->Iterate(schema::JournalPrefix(e));
    for (jt->Seek(); jt->Valid(); jt->Next()) {
      std::string_view key = jt->key_suffix();
      if (key.empty() || key[0] != schema::kExtentPrefix) continue;
      auto ht = db_->Iterate(schema::HistoryPrefix(key));
      std::string from;
      PutBig64(&from, ~(e - 1));
      ht->Seek(from);
      if (!ht->Valid()) continue;
      std::string_view k;
      uint64_t born = 0, died = 0;
      std::string_view value;
      if (!schema::ParseHistoryKey(ht->key(), &k, &born) || !schema::DecodeHistory(ht->value(), &died, &value)) continue;
      ExtentRecord ext;
      if (died != e || born <= previous || !ExtentRecord::Decode(value, &ext)) continue;
      drops[ext.fp] += 1;
    }
    QCFS_RETURN_IF_ERROR(jt->status());
  }
  uint64_t bytes = 0;
  for (auto& [fp, n] : drops) {
    QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(schema::ChunkKey(fp)));
    schema::ChunkIndexRecord c;
    if (value.has_value() && schema::ChunkIndexRecord::Decode(*value, &c) && c.refcount <= n) bytes += c.share;
  }
  return bytes;
}

// ---------------------------------------------------------------- delete

Status Volume::DeleteSnapshot(std::string_view name) {
  QCFS_RETURN_IF_ERROR(CheckWritable());
  std::lock_guard admin(admin_mu_);
  auto snap = FindSnapshot(name);
  if (!snap) return Status::Errorf(ENOENT, "no snapshot named '{}'", name);
  const uint64_t id = snap->first;
  SnapshotRecord rec = snap->second;
  PendingOp op;
  {
    std::lock_guard ns(ns_mu_);
    std::unique_lock epoch(epoch_mu_);
    uint64_t previous = 0, next = 0, latest = 0;
    {
      std::lock_guard lock(snap_mu_);
      for (auto& [other, r] : snapshots_) {
        if (other == id) continue;
        if (r.epoch < rec.epoch) previous = std::max(previous, r.epoch);
        if (r.epoch > rec.epoch && (next == 0 || r.epoch < next)) next = r.epoch;
        latest = std::max(latest, r.epoch);
      }
    }
    op.kind = kOpDelete;
    op.snapshot = id;
    op.from = rec.epoch;
    op.to = next != 0 ? next : state_.current_epoch;
    op.previous = previous;
    rocksdb::WriteBatch batch;
    SnapshotRecord deleting = rec;
    deleting.state = 1;
    std::string v;
    deleting.EncodeTo(&v);
    batch.Put(Sl(schema::SnapshotKey(id)), Sl(v));
    v.clear();
    op.EncodeTo(&v);
    batch.Put(Sl(schema::SystemKey(schema::kPendingName)), Sl(v));
    QCFS_RETURN_IF_ERROR(WriteBatch(&batch, true));
    {
      std::lock_guard lock(snap_mu_);
      snapshots_.erase(id);
    }
    // From now on the live path keeps versions only for the snapshots that remain.
    latest_snapshot_ = latest;
  }
  QCFS_RETURN_IF_ERROR(RunDelete(op));
  rocksdb::WriteBatch done;
  done.Delete(Sl(schema::SnapshotKey(id)));
  done.Delete(Sl(schema::SystemKey(schema::kPendingName)));
  QCFS_RETURN_IF_ERROR(WriteBatch(&done, true));
  QCFS_RETURN_IF_ERROR(store_->SyncFreed());
  if (options_.on_entry_changed) options_.on_entry_changed(kSnapshotsDirIno, rec.name);
  return Status::Ok();
}

Status Volume::RunDelete(const PendingOp& op) {
  // Idempotent: a crash part-way reruns it from the start at the next mount.
  const bool oldest = op.previous == 0;
  std::string end = schema::JournalPrefix(op.to + 1);
  auto jt = db_->Iterate(std::string(1, schema::kJournalPrefix));
  jt->Seek(schema::JournalPrefix(op.from + 1).substr(1));
  while (jt->Valid() && jt->key() < end) {
    // One batch per group of changed keys.
    auto scope = BeginCommit();
    auto txn = store_->Begin();
    rocksdb::WriteBatch batch;
    size_t n = 0;
    for (; jt->Valid() && jt->key() < end && n < kKeysPerBatch; jt->Next(), ++n) {
      std::string_view jsuffix = jt->key_suffix();
      if (jsuffix.size() < 9) continue;
      const uint64_t e = GetBig64(jsuffix.data());
      std::string key(jsuffix.substr(8));
      auto ht = db_->Iterate(schema::HistoryPrefix(key));
      std::string from;
      PutBig64(&from, ~(e - 1));
      ht->Seek(from);
      if (ht->Valid()) {
        std::string_view k, value;
        uint64_t born = 0, died = 0;
        if (schema::ParseHistoryKey(ht->key(), &k, &born) && schema::DecodeHistory(ht->value(), &died, &value) &&
            died == e && born > op.previous) {
          // Only the deleted snapshot saw this version.
          if (!key.empty() && key[0] == schema::kExtentPrefix) {
            ExtentRecord ext;
            if (ExtentRecord::Decode(value, &ext)) {
              QCFS_RETURN_IF_ERROR(txn->DropRef(ext.fp));
              txn->AddHistory(-static_cast<int64_t>(ext.raw_len));
            }
          }
          batch.Delete(rocksdb::Slice(ht->key().data(), ht->key().size()));
        }
      }
      QCFS_RETURN_IF_ERROR(ht->status());
      // With no older snapshot, no diff needs these changes any more.
      if (oldest) batch.Delete(rocksdb::Slice(jt->key().data(), jt->key().size()));
    }
    QCFS_RETURN_IF_ERROR(jt->status());
    QCFS_RETURN_IF_ERROR(txn->Prepare(&batch));
    QCFS_RETURN_IF_ERROR(WriteBatch(&batch));
    txn->Committed();
  }
  return jt->status();
}

// ---------------------------------------------------------------- restore

Result<std::string> Volume::RestoreSnapshot(std::string_view name) {
  QCFS_RETURN_IF_ERROR(CheckWritable());
  std::lock_guard admin(admin_mu_);
  auto snap = FindSnapshot(name);
  if (!snap) return Status::Errorf(ENOENT, "no snapshot named '{}'", name);
  // First the safety net: the tree as it is now.
  std::string auto_name = TimestampName("before-restore");
  for (int i = 2; FindSnapshot(auto_name); ++i) auto_name = TimestampName("before-restore") + "-" + std::to_string(i);
  QCFS_ASSIGN_OR_RETURN(SnapshotInfo saved, CreateSnapshotLocked(auto_name));

  std::vector<uint64_t> inodes;
  std::vector<std::pair<uint64_t, std::string>> entries;
  {
    // Nothing else changes the volume meanwhile: every stripe, then the epoch.
    std::lock_guard ns(ns_mu_);
    std::vector<std::unique_lock<std::mutex>> stripes;
    for (auto& m : stripes_) stripes.emplace_back(m);
    std::unique_lock epoch(epoch_mu_);
    PendingOp op;
    op.kind = kOpRestore;
    op.snapshot = snap->first;
    op.from = snap->second.epoch;
    op.to = saved.epoch;
    rocksdb::WriteBatch intent;
    std::string v;
    op.EncodeTo(&v);
    intent.Put(Sl(schema::SystemKey(schema::kPendingName)), Sl(v));
    QCFS_RETURN_IF_ERROR(WriteBatch(&intent, true));
    QCFS_RETURN_IF_ERROR(RunRestore(op, &inodes, &entries));
    inode_count_ = snap->second.files;
    rocksdb::WriteBatch done;
    done.Delete(Sl(schema::SystemKey(schema::kPendingName)));
    PutVolumeState(&done);
    QCFS_RETURN_IF_ERROR(WriteBatch(&done, true));
    ResetStatesAfterRestore();
  }
  // The kernel forgets what it cached of the old tree.
  if (options_.on_inode_replaced) {
    for (uint64_t ino : inodes) options_.on_inode_replaced(ino);
  }
  if (options_.on_entry_changed) {
    for (auto& [parent, entry] : entries) options_.on_entry_changed(parent, entry);
  }
  return auto_name;
}

Status Volume::RunRestore(const PendingOp& op, std::vector<uint64_t>* inodes,
                          std::vector<std::pair<uint64_t, std::string>>* entries) {
  // Every key changed since the snapshot gets back the version the snapshot
  // saw. Idempotent, so a crash part-way reruns it at the next mount.
  std::set<std::string> keys;
  for (uint64_t e = op.from + 1; e <= op.to; ++e) {
    auto jt = db_->Iterate(schema::JournalPrefix(e));
    for (jt->Seek(); jt->Valid(); jt->Next()) keys.emplace(jt->key_suffix());
    QCFS_RETURN_IF_ERROR(jt->status());
  }
  std::set<uint64_t> touched;
  internal::Epochs epochs{state_.current_epoch, latest_snapshot_};
  auto it = keys.begin();
  while (it != keys.end()) {
    auto txn = store_->Begin();
    rocksdb::WriteBatch batch;
    internal::VersionedBatch vb(db_.get(), &batch, epochs);
    for (size_t n = 0; it != keys.end() && n < kKeysPerBatch; ++it, ++n) {
      const std::string& key = *it;
      QCFS_ASSIGN_OR_RETURN(auto target, GetAt(key, op.from));
      QCFS_ASSIGN_OR_RETURN(auto live, db_->Get(key));
      if (SamePayload(target, live)) continue;
      const char kind = key[0];
      touched.insert(KeyInode(key));
      if (kind == schema::kDirentPrefix && key.size() > 9) entries->emplace_back(KeyInode(key), key.substr(9));
      ExtentRecord old_ext, new_ext;
      bool old_is_ext = kind == schema::kExtentPrefix && live.has_value() && ExtentRecord::Decode(*live, &old_ext);
      bool new_is_ext = kind == schema::kExtentPrefix && target.has_value() && ExtentRecord::Decode(*target, &new_ext);
      if (new_is_ext) QCFS_RETURN_IF_ERROR(txn->AddRefExisting(new_ext.fp));
      Result<bool> kept = false;
      if (target.has_value()) kept = vb.Put(key, Restamp(*target, vb.epoch()), &live);
      else kept = vb.Delete(key, &live);
      QCFS_RETURN_IF_ERROR(kept.status());
      if (old_is_ext) {
        if (*kept) txn->AddHistory(old_ext.raw_len);
        else QCFS_RETURN_IF_ERROR(txn->DropRef(old_ext.fp));
      }
      if (kind == schema::kInodePrefix) {
        // The kernel may hold the inode under its primary name even where
        // that entry did not change: that name is forgotten too.
        for (const auto* value : {&live, &target}) {
          InodeRecord named;
          if (value->has_value() && InodeRecord::Decode(**value, &named) && named.parent != 0 && !named.name.empty()) {
            entries->emplace_back(named.parent, named.name);
          }
        }
        // An inode deleted while open in the snapshot is released at the next mount.
        InodeRecord rec;
        bool orphan = target.has_value() && InodeRecord::Decode(*target, &rec) && rec.nlink == 0;
        if (orphan) batch.Put(Sl(schema::OrphanKey(KeyInode(key))), rocksdb::Slice());
        else batch.Delete(Sl(schema::OrphanKey(KeyInode(key))));
      }
    }
    QCFS_RETURN_IF_ERROR(txn->Prepare(&batch));
    QCFS_RETURN_IF_ERROR(WriteBatch(&batch));
    txn->Committed();
  }
  inodes->assign(touched.begin(), touched.end());
  return Status::Ok();
}

void Volume::ResetStatesAfterRestore() {
  // REQUIRES: every stripe held. In-memory states describe the old tree.
  std::vector<InodeRef> states;
  {
    std::lock_guard lock(states_mu_);
    for (auto& [ino, inode] : states_) states.push_back(inode);
    states_.clear();
  }
  for (const InodeRef& old : states) {
    size_t dropped = old->dirty.size();
    old->dirty.clear();
    ReleaseBuffer(dropped);
    old->purged = true;  // a flush that raced with the restore must not commit
    if (old->open_count == 0) continue;
    auto rec = LoadRecord(old->ino);
    std::lock_guard lock(states_mu_);
    if (!rec.ok()) {
      old->stale = true;  // the file did not exist in the snapshot
      states_[old->ino] = old;
      continue;
    }
    auto fresh = std::make_shared<Inode>(old->ino);
    fresh->rec = *rec;
    fresh->size = rec->size;
    fresh->open_count = old->open_count;
    states_[old->ino] = fresh;
  }
}

// ---------------------------------------------------------------- diff

Result<SnapshotDiff> Volume::Diff(std::string_view from, std::string_view to) {
  auto a = FindSnapshot(from);
  if (!a) return Status::Errorf(ENOENT, "no snapshot named '{}'", from);
  const bool live = to.empty();
  uint64_t b_epoch;
  if (live) {
    if (!options_.read_only) QCFS_RETURN_IF_ERROR(Sync());
    std::shared_lock epoch(epoch_mu_);
    b_epoch = state_.current_epoch;
  } else {
    auto b = FindSnapshot(to);
    if (!b) return Status::Errorf(ENOENT, "no snapshot named '{}'", to);
    b_epoch = b->second.epoch;
  }
  const uint64_t a_epoch = a->second.epoch;
  if (b_epoch < a_epoch) {
    return Status::Errorf(EINVAL, "'{}' is older than '{}': give the older snapshot first", to, from);
  }
  SnapshotDiff diff;
  diff.from.assign(from);
  diff.to.assign(to);

  // The keys that changed between the two points, from the journal.
  std::set<std::string> keys;
  for (uint64_t e = a_epoch + 1; e <= b_epoch; ++e) {
    auto jt = db_->Iterate(schema::JournalPrefix(e));
    for (jt->Seek(); jt->Valid(); jt->Next()) keys.emplace(jt->key_suffix());
    QCFS_RETURN_IF_ERROR(jt->status());
  }
  diff.journal_keys = keys.size();
  auto after = [&](const std::string& key) -> Result<std::optional<std::string>> {
    if (live) return db_->Get(key);
    return GetAt(key, b_epoch);
  };
  auto record = [&](uint64_t ino, bool at_b) -> std::optional<InodeRecord> {
    auto value = at_b ? after(schema::InodeKey(ino)) : GetAt(schema::InodeKey(ino), a_epoch);
    InodeRecord rec;
    if (!value.ok() || !value->has_value() || !InodeRecord::Decode(**value, &rec)) return std::nullopt;
    return rec;
  };

  std::map<uint64_t, SnapshotDiff::InodeChange> changes;
  struct Name {
    uint64_t parent;
    std::string name;
  };
  std::map<uint64_t, std::vector<Name>> removed, added;
  for (const std::string& key : keys) {
    QCFS_ASSIGN_OR_RETURN(auto before, GetAt(key, a_epoch));
    QCFS_ASSIGN_OR_RETURN(auto now, after(key));
    if (SamePayload(before, now)) continue;
    const uint64_t ino = KeyInode(key);
    switch (key[0]) {
      case schema::kInodePrefix:
      case schema::kXattrPrefix:
        changes[ino].ino = ino;
        changes[ino].metadata = true;
        break;
      case schema::kExtentPrefix:
        changes[ino].ino = ino;
        if (key.size() == 17) changes[ino].chunks.push_back(GetBig64(key.data() + 9));
        break;
      case schema::kDirentPrefix: {
        std::string name = key.substr(9);
        DirentRecord d;
        if (before.has_value() && DirentRecord::Decode(*before, &d)) removed[d.ino].push_back({ino, name});
        if (now.has_value() && DirentRecord::Decode(*now, &d)) added[d.ino].push_back({ino, name});
        break;
      }
      default:
        break;
    }
  }
  for (auto& [ino, names] : removed) changes[ino].ino = ino;
  for (auto& [ino, names] : added) changes[ino].ino = ino;

  // Paths at either point, walking primary names up to the root.
  std::map<std::pair<uint64_t, bool>, std::string> path_cache;
  std::function<std::string(uint64_t, bool)> path_of = [&](uint64_t ino, bool at_b) -> std::string {
    if (ino == kRootIno) return "/";
    auto cached = path_cache.find({ino, at_b});
    if (cached != path_cache.end()) return cached->second;
    std::string path;
    auto rec = record(ino, at_b);
    if (!rec || rec->name.empty() || rec->parent == 0 || rec->parent == ino) {
      path = fmt::format("<inode {}>", ino);
    } else {
      std::string up = path_of(rec->parent, at_b);
      path = (up == "/" ? "" : up) + "/" + rec->name;
    }
    path_cache[{ino, at_b}] = path;
    return path;
  };
  auto join = [&](uint64_t parent, const std::string& name, bool at_b) {
    std::string up = path_of(parent, at_b);
    return (up == "/" ? "" : up) + "/" + name;
  };

  const uint32_t cs = chunk_size_;
  for (auto& [ino, c] : changes) {
    auto before = record(ino, false);
    auto now = record(ino, true);
    c.existed_before = before.has_value();
    c.exists_after = now.has_value();
    c.size_before = before ? before->size : 0;
    c.size_after = now ? now->size : 0;
    std::sort(c.chunks.begin(), c.chunks.end());
    const uint32_t mode = now ? now->mode : before ? before->mode : 0;
    SnapshotDiff::Entry base;
    base.ino = ino;
    base.mode = mode;
    base.data = !c.chunks.empty();
    for (uint64_t idx : c.chunks) {
      uint64_t start = idx * cs;
      uint64_t end = std::min<uint64_t>(start + cs, std::max(c.size_after, c.size_before));
      if (!base.ranges.empty() && base.ranges.back().second == start) base.ranges.back().second = end;
      else if (end > start) base.ranges.emplace_back(start, end);
    }
    auto& gone = removed[ino];
    auto& fresh = added[ino];
    if (!c.existed_before && c.exists_after) {
      for (auto& n : fresh) {
        SnapshotDiff::Entry e = base;
        e.kind = SnapshotDiff::Entry::Kind::kAdded;
        e.path = join(n.parent, n.name, true);
        diff.entries.push_back(e);
      }
    } else if (c.existed_before && !c.exists_after) {
      for (auto& n : gone) {
        SnapshotDiff::Entry e = base;
        e.kind = SnapshotDiff::Entry::Kind::kDeleted;
        e.path = join(n.parent, n.name, false);
        diff.entries.push_back(e);
      }
    } else if (c.existed_before && c.exists_after) {
      size_t pairs = std::min(gone.size(), fresh.size());
      for (size_t i = 0; i < pairs; ++i) {
        SnapshotDiff::Entry e = base;
        e.kind = SnapshotDiff::Entry::Kind::kRenamed;
        e.old_path = join(gone[i].parent, gone[i].name, false);
        e.path = join(fresh[i].parent, fresh[i].name, true);
        diff.entries.push_back(e);
      }
      for (size_t i = pairs; i < fresh.size(); ++i) {  // another hard link
        SnapshotDiff::Entry e = base;
        e.kind = SnapshotDiff::Entry::Kind::kAdded;
        e.path = join(fresh[i].parent, fresh[i].name, true);
        diff.entries.push_back(e);
      }
      for (size_t i = pairs; i < gone.size(); ++i) {
        SnapshotDiff::Entry e = base;
        e.kind = SnapshotDiff::Entry::Kind::kDeleted;
        e.path = join(gone[i].parent, gone[i].name, false);
        diff.entries.push_back(e);
      }
      if (pairs == 0 && (c.metadata || base.data)) {
        SnapshotDiff::Entry e = base;
        e.kind = SnapshotDiff::Entry::Kind::kModified;
        e.path = path_of(ino, true);
        diff.entries.push_back(e);
      }
    }
    diff.inodes.push_back(c);
  }
  std::sort(diff.entries.begin(), diff.entries.end(),
            [](const SnapshotDiff::Entry& x, const SnapshotDiff::Entry& y) { return x.path < y.path; });
  return diff;
}

}  // namespace qcfs
