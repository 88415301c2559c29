#include "qcfs/check/check.h"

#include "qcfs/core/coding.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "qcfs/core/units.h"
#include "qcfs/fs/internal/time.h"
#include "qcfs/fs/volume.h"
#include "qcfs/meta/metafs.h"
#include "qcfs/meta/schema.h"
#include "qcfs/store/internal/record.h"

namespace qcfs {

using schema::ChunkIndexRecord;
using schema::DirentRecord;
using schema::ExtentRecord;
using schema::InodeRecord;

uint64_t CheckReport::unrepaired() const {
  return static_cast<uint64_t>(std::count_if(findings.begin(), findings.end(), [](auto& f) { return !f.repaired; }));
}

namespace {

rocksdb::Slice Sl(const std::string& s) { return rocksdb::Slice(s); }

struct InodeInfo {
  InodeRecord rec;
  uint32_t links = 0;    // dirents naming it
  uint32_t subdirs = 0;  // directories: child directories
  uint64_t entries = 0;  // directories: entries
  uint64_t extents = 0;
  uint64_t first_parent = 0;
  std::string first_name;
  bool primary_found = false;  // its recorded primary name is one of its names
  bool orphan = false;
  bool xattrs = false;  // extended attributes are stored for it
};

class Checker {
 public:
  Checker(Volume* volume, const CheckOptions& options, CheckReport* report)
      : v_(volume), db_(volume->db()), store_(volume->store()), options_(options), report_(report) {}

  Status Run();

 private:
  void Find(std::string kind, std::string detail, std::vector<std::string> paths = {}, bool repaired = false) {
    report_->findings.push_back({std::move(kind), std::move(detail), std::move(paths), repaired});
  }
  std::string PathOf(uint64_t ino) const;
  Status ScanInodes();
  Status ScanDirents();
  Status ScanExtents();
  Status ScanSnapshots();
  Status ScanHistory();
  Status ScanJournal();
  Status ScanChunks();
  Status ScanLocations();
  Status ScanXattrsAndOrphans();
  Status CheckLinks();
  Status CheckCounters();
  Status CheckSpace();
  void CheckJournalCopies();
  Status CheckFileCopies();
  Status Commit();

  Volume* v_;
  MetaDb* db_;
  ChunkStore* store_;
  const CheckOptions& options_;
  CheckReport* report_;
  rocksdb::WriteBatch batch_;  // repairs, written at the end

  std::map<uint64_t, InodeInfo> inodes_;
  std::unordered_map<Fingerprint, uint64_t, FingerprintHash> refs_;  // counted from extents
  std::unordered_set<Fingerprint, FingerprintHash> damaged_;
  std::unordered_map<Fingerprint, ChunkIndexRecord, FingerprintHash> index_;
  std::unordered_map<Fingerprint, std::string, FingerprintHash> damage_text_;
  schema::StoreStats stats_;
  std::vector<uint64_t> live_;  // per segment, recomputed
  std::vector<uint64_t> lost_;  // unreachable inodes that repair moves to /lost+found
  std::set<uint64_t> snapshot_epochs_;  // of active snapshots
  uint64_t current_epoch_ = 1;
  schema::VolumeState state_;
  bool state_dirty_ = false;
  uint64_t history_bytes_ = 0;
};

std::string Checker::PathOf(uint64_t ino) const {
  std::vector<std::string> parts;
  uint64_t cur = ino;
  for (int depth = 0; cur != kRootIno && depth < 4096; ++depth) {
    auto it = inodes_.find(cur);
    if (it == inodes_.end() || it->second.first_name.empty()) {
      parts.push_back(fmt::format("<inode {}>", cur));
      break;
    }
    parts.push_back(it->second.first_name);
    cur = it->second.first_parent;
  }
  std::string path;
  for (auto p = parts.rbegin(); p != parts.rend(); ++p) path += "/" + *p;
  return path.empty() ? "/" : path;
}

Status Checker::ScanInodes() {
  auto it = db_->Iterate(std::string(1, schema::kInodePrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    uint64_t ino;
    InodeInfo info;
    if (!schema::ParseU64Suffix(it->key_suffix(), &ino) || !InodeRecord::Decode(it->value(), &info.rec)) {
      Find("malformed-inode", fmt::format("inode record {} cannot be decoded", ino));
      continue;
    }
    inodes_[ino] = std::move(info);
  }
  QCFS_RETURN_IF_ERROR(it->status());
  report_->inodes = inodes_.size();
  if (!inodes_.count(kRootIno) || !S_ISDIR(inodes_[kRootIno].rec.mode)) {
    return Status::Error(EUCLEAN, "the root directory is missing or not a directory; the volume cannot be repaired");
  }
  for (auto& [ino, info] : inodes_) {
    if (S_ISDIR(info.rec.mode)) ++report_->directories;
    if (S_ISREG(info.rec.mode)) ++report_->files;
  }
  return Status::Ok();
}

Status Checker::ScanDirents() {
  auto it = db_->Iterate(std::string(1, schema::kDirentPrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    std::string_view sfx = it->key_suffix();
    if (sfx.size() < 9) {
      Find("malformed-dirent", "directory entry key too short");
      continue;
    }
    uint64_t parent;
    schema::ParseU64Suffix(sfx.substr(0, 8), &parent);
    std::string name(sfx.substr(8));
    DirentRecord d;
    if (!DirentRecord::Decode(it->value(), &d)) {
      Find("malformed-dirent", fmt::format("entry '{}' in directory {} cannot be decoded", name, parent));
      continue;
    }
    auto p = inodes_.find(parent);
    auto c = inodes_.find(d.ino);
    if (p == inodes_.end() || !S_ISDIR(p->second.rec.mode)) {
      Find("stale-dirent", fmt::format("entry '{}' belongs to directory {}, which does not exist", name, parent), {},
           options_.repair);
      if (options_.repair) batch_.Delete(rocksdb::Slice(it->key().data(), it->key().size()));
      continue;
    }
    p->second.entries += 1;
    if (c == inodes_.end()) {
      Find("dangling-dirent", fmt::format("{}/{} names inode {}, which does not exist", PathOf(parent), name, d.ino),
           {}, options_.repair);
      if (options_.repair) {
        batch_.Delete(rocksdb::Slice(it->key().data(), it->key().size()));
        p->second.entries -= 1;
      }
      continue;
    }
    InodeInfo& child = c->second;
    if (d.type != IFTODT(child.rec.mode)) {
      Find("dirent-type", fmt::format("entry '{}' in directory {} has the wrong file type", name, parent), {},
           options_.repair);
      if (options_.repair) {
        d.type = static_cast<uint8_t>(IFTODT(child.rec.mode));
        std::string v;
        d.EncodeTo(&v);
        batch_.Put(rocksdb::Slice(it->key().data(), it->key().size()), Sl(v));
      }
    }
    child.links += 1;
    if (child.first_name.empty()) {
      child.first_parent = parent;
      child.first_name = name;
    }
    if (child.rec.parent == parent && child.rec.name == name) child.primary_found = true;
    if (S_ISDIR(child.rec.mode)) p->second.subdirs += 1;
  }
  return it->status();
}

Status Checker::ScanExtents() {
  const uint32_t cs = v_->superblock().chunk_size;
  auto it = db_->Iterate(std::string(1, schema::kExtentPrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    std::string_view sfx = it->key_suffix();
    uint64_t ino = 0, index = 0;
    ExtentRecord e;
    if (sfx.size() != 16 || !ExtentRecord::Decode(it->value(), &e)) {
      Find("malformed-extent", "an extent record cannot be decoded");
      continue;
    }
    schema::ParseU64Suffix(sfx.substr(0, 8), &ino);
    schema::ParseU64Suffix(sfx.substr(8), &index);
    auto in = inodes_.find(ino);
    if (in == inodes_.end() || !S_ISREG(in->second.rec.mode)) {
      Find("stale-extent", fmt::format("an extent belongs to inode {}, which is not a file", ino), {}, options_.repair);
      if (options_.repair) batch_.Delete(rocksdb::Slice(it->key().data(), it->key().size()));
      continue;
    }
    if (index * cs >= in->second.rec.size) {
      Find("extent-beyond-eof",
           fmt::format("{}: chunk {} lies beyond the end of the file", PathOf(ino), index), {PathOf(ino)},
           options_.repair);
      if (options_.repair) batch_.Delete(rocksdb::Slice(it->key().data(), it->key().size()));
      continue;
    }
    in->second.extents += 1;
    refs_[e.fp] += 1;
    ++report_->extents;
  }
  return it->status();
}

Status Checker::ScanSnapshots() {
  QCFS_ASSIGN_OR_RETURN(auto vsv, db_->Get(schema::SystemKey(schema::kVolumeStateName)));
  schema::VolumeState vs;
  if (vsv.has_value() && schema::VolumeState::Decode(*vsv, &vs)) current_epoch_ = vs.current_epoch;
  std::set<std::string> names;
  auto it = db_->Iterate(std::string(1, schema::kSnapshotPrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    uint64_t id = 0;
    schema::SnapshotRecord rec;
    if (!schema::ParseU64Suffix(it->key_suffix(), &id) || !schema::SnapshotRecord::Decode(it->value(), &rec)) {
      Find("malformed-snapshot", "a snapshot record cannot be decoded");
      continue;
    }
    if (rec.state != 0) continue;  // being deleted: the next mount finishes it
    if (rec.epoch >= current_epoch_) {
      Find("snapshot-epoch", fmt::format("snapshot '{}' is from epoch {}, not before the current {}", rec.name,
                                         rec.epoch, current_epoch_));
    }
    if (!names.insert(rec.name).second) Find("snapshot-name", fmt::format("two snapshots are named '{}'", rec.name));
    snapshot_epochs_.insert(rec.epoch);
    ++report_->snapshots;
  }
  QCFS_RETURN_IF_ERROR(it->status());
  QCFS_ASSIGN_OR_RETURN(auto pending, db_->Get(schema::SystemKey(schema::kPendingName)));
  if (pending.has_value()) {
    report_->notes.push_back("a snapshot deletion or restore was interrupted; the next mount completes it");
  }
  return Status::Ok();
}

Status Checker::ScanHistory() {
  // Kept versions hold references like live ones, as long as a snapshot sees them.
  auto it = db_->Iterate(std::string(1, schema::kHistoryPrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    std::string_view key, value;
    uint64_t born = 0, died = 0;
    if (!schema::ParseHistoryKey(it->key(), &key, &born) || !schema::DecodeHistory(it->value(), &died, &value) ||
        died <= born) {
      Find("malformed-history", "a kept version cannot be decoded", {}, options_.repair);
      if (options_.repair) batch_.Delete(rocksdb::Slice(it->key().data(), it->key().size()));
      continue;
    }
    auto seen = snapshot_epochs_.lower_bound(born);
    bool needed = seen != snapshot_epochs_.end() && *seen < died;
    if (!needed) {
      // Unless an interrupted deletion is still walking it (the next mount does).
      bool pending = !report_->notes.empty();
      if (!pending) {
        Find("unneeded-history", fmt::format("a version kept from epoch {} to {} belongs to no snapshot", born, died),
             {}, options_.repair);
        if (options_.repair) batch_.Delete(rocksdb::Slice(it->key().data(), it->key().size()));
        continue;
      }
    }
    ++report_->kept_versions;
    if (!key.empty() && key[0] == schema::kExtentPrefix) {
      ExtentRecord e;
      if (!ExtentRecord::Decode(value, &e)) {
        Find("malformed-history", "a kept extent cannot be decoded");
        continue;
      }
      refs_[e.fp] += 1;
      history_bytes_ += e.raw_len;
    }
  }
  return it->status();
}

Status Checker::ScanJournal() {
  // Changes matter only after the oldest snapshot (diffs start there).
  const uint64_t oldest = snapshot_epochs_.empty() ? UINT64_MAX : *snapshot_epochs_.begin();
  auto it = db_->Iterate(std::string(1, schema::kJournalPrefix));
  uint64_t stale = 0;
  for (it->Seek(); it->Valid(); it->Next()) {
    if (it->key_suffix().size() < 9) continue;
    uint64_t epoch = GetBig64(it->key_suffix().data());
    if (epoch > oldest && epoch <= current_epoch_) continue;
    if (!report_->notes.empty()) continue;  // an interrupted deletion cleans these up
    ++stale;
    if (options_.repair) batch_.Delete(rocksdb::Slice(it->key().data(), it->key().size()));
  }
  QCFS_RETURN_IF_ERROR(it->status());
  if (stale > 0) {
    Find("stale-journal", fmt::format("{} journal entries no snapshot needs", stale), {}, options_.repair);
  }
  return Status::Ok();
}

Status Checker::ScanChunks() {
  const Superblock& sb = v_->superblock();
  live_.assign(sb.segment_count, 0);
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> records;  // (segment, offset) -> record length
  auto it = db_->Iterate(std::string(1, schema::kChunkPrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    ChunkIndexRecord rec;
    if (it->key_suffix().size() != Fingerprint::kSize || !ChunkIndexRecord::Decode(it->value(), &rec)) {
      Find("malformed-chunk", "a chunk index record cannot be decoded");
      continue;
    }
    index_[Fingerprint::FromBytes(it->key_suffix())] = rec;
  }
  QCFS_RETURN_IF_ERROR(it->status());
  report_->chunks = index_.size();

  uint64_t done = 0;
  for (auto& [fp, rec] : index_) {
    const uint32_t len = rec.share;
    auto counted = refs_.find(fp);
    uint64_t refs = counted == refs_.end() ? 0 : counted->second;
    if (rec.segment >= sb.segment_count || uint64_t{rec.offset} + rec.record_len > sb.segment_size ||
        rec.share > rec.record_len || (rec.packed() && uint64_t{rec.pack_offset} + rec.raw_len > rec.pack_raw)) {
      Find("chunk-location", fmt::format("chunk {} points outside the segment area", fp.ShortHex()));
      damaged_.insert(fp);
      continue;
    }
    if (refs == 0) {
      Find("leaked-chunk", fmt::format("chunk {} ({}) is stored but no file uses it", fp.ShortHex(), FormatSize(len)),
           {}, options_.repair);
      if (options_.repair) {
        batch_.Delete(Sl(schema::ChunkKey(fp)));
        batch_.Delete(Sl(schema::LocationKey(rec.segment, rec.offset, rec.pack_offset)));
      } else {
        live_[rec.segment] += len;
        stats_.chunks += 1;
        stats_.unique_bytes += rec.raw_len;
        stats_.stored_bytes += len;
      }
      continue;
    }
    if (rec.refcount != refs) {
      Find("refcount", fmt::format("chunk {} counts {} references but {} extents use it", fp.ShortHex(),
                                   rec.refcount, refs),
           {}, options_.repair);
      if (options_.repair) {
        rec.refcount = refs;
        std::string v;
        rec.EncodeTo(&v);
        batch_.Put(Sl(schema::ChunkKey(fp)), Sl(v));
      }
    }
    live_[rec.segment] += len;
    stats_.chunks += 1;
    stats_.unique_bytes += rec.raw_len;
    stats_.stored_bytes += len;
    stats_.referenced_bytes += uint64_t{rec.raw_len} * refs;
    auto [slot, fresh] = records.emplace(std::make_pair(rec.segment, rec.offset), rec.record_len);
    if (!fresh && slot->second != rec.record_len) {
      Find("overlap", fmt::format("chunks at segment {} offset {} disagree on their record's length", rec.segment,
                                  rec.offset));
    }
    if (options_.verify_data) {
      std::string problem = store_->VerifyChunk(fp, rec, options_.full);
      if (!problem.empty()) damaged_.insert(fp);
      report_->chunks_verified += 1;
      report_->bytes_verified += len;
      if (!problem.empty()) damage_text_[fp] = problem;
    }
    if (options_.progress && (++done % 256 == 0)) options_.progress(done, index_.size());
  }
  if (options_.progress) options_.progress(index_.size(), index_.size());

  // Records must not overlap.
  for (auto it = records.begin(); it != records.end(); ++it) {
    auto next = std::next(it);
    if (next == records.end()) break;
    if (next->first.first == it->first.first && it->first.second + it->second > next->first.second) {
      Find("overlap", fmt::format("records overlap in segment {} at offset {}", next->first.first, next->first.second));
    }
  }
  // Extents that name chunks the index does not hold.
  for (auto& [fp, n] : refs_) {
    if (!index_.count(fp)) {
      damaged_.insert(fp);
      damage_text_[fp] = fmt::format("chunk {} is missing from the index", fp.ShortHex());
    }
  }
  return Status::Ok();
}

Status Checker::ScanLocations() {
  auto it = db_->Iterate(std::string(1, schema::kLocationPrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    std::string_view sfx = it->key_suffix();
    uint32_t seg = 0, off = 0, pos = 0;
    bool ok = sfx.size() == 12 && it->value().size() == Fingerprint::kSize;
    if (ok) {
      schema::ParseU32Suffix(sfx.substr(0, 4), &seg);
      schema::ParseU32Suffix(sfx.substr(4, 4), &off);
      schema::ParseU32Suffix(sfx.substr(8), &pos);
      auto c = index_.find(Fingerprint::FromBytes(it->value()));
      ok = c != index_.end() && c->second.segment == seg && c->second.offset == off && c->second.pack_offset == pos;
    }
    if (!ok) {
      Find("stale-location", fmt::format("reverse index entry for segment {} offset {} is stale", seg, off), {},
           options_.repair);
      if (options_.repair) batch_.Delete(rocksdb::Slice(it->key().data(), it->key().size()));
    }
  }
  QCFS_RETURN_IF_ERROR(it->status());
  // And every indexed chunk needs its reverse entry (the cleaner moves by it).
  for (auto& [fp, rec] : index_) {
    if (!refs_.count(fp) && options_.repair) continue;  // deleted as leaked
    std::string lkey = schema::LocationKey(rec.segment, rec.offset, rec.pack_offset);
    QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(lkey));
    if (!value.has_value() || *value != fp.AsStringView()) {
      Find("missing-location", fmt::format("chunk {} has no reverse index entry", fp.ShortHex()), {}, options_.repair);
      if (options_.repair) batch_.Put(Sl(lkey), rocksdb::Slice(fp.AsStringView()));
    }
  }
  return Status::Ok();
}

Status Checker::ScanXattrsAndOrphans() {
  auto it = db_->Iterate(std::string(1, schema::kXattrPrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    uint64_t ino = 0;
    if (it->key_suffix().size() < 8) continue;
    schema::ParseU64Suffix(it->key_suffix().substr(0, 8), &ino);
    auto in = inodes_.find(ino);
    if (in != inodes_.end()) {
      in->second.xattrs = true;
    } else {
      Find("stale-xattr", fmt::format("an extended attribute belongs to inode {}, which does not exist", ino), {},
           options_.repair);
      if (options_.repair) batch_.Delete(rocksdb::Slice(it->key().data(), it->key().size()));
    }
  }
  QCFS_RETURN_IF_ERROR(it->status());
  auto ot = db_->Iterate(std::string(1, schema::kOrphanPrefix));
  for (ot->Seek(); ot->Valid(); ot->Next()) {
    uint64_t ino = 0;
    schema::ParseU64Suffix(ot->key_suffix(), &ino);
    auto in = inodes_.find(ino);
    if (in == inodes_.end()) {
      if (options_.repair) batch_.Delete(rocksdb::Slice(ot->key().data(), ot->key().size()));
      Find("stale-orphan", fmt::format("orphan record for inode {}, which does not exist", ino), {}, options_.repair);
    } else {
      in->second.orphan = true;  // deleted while open; the next mount releases it
    }
  }
  return ot->status();
}

Status Checker::CheckLinks() {
  std::vector<uint64_t> unreachable;
  for (auto& [ino, info] : inodes_) {
    InodeRecord& rec = info.rec;
    bool fix = false;
    if (info.xattrs && !(rec.flags & InodeRecord::kInodeMayHaveXattrs)) {
      // Without the flag, removing the inode would leave its attributes behind.
      Find("xattr-flag", fmt::format("{} has extended attributes its record does not mention", PathOf(ino)), {},
           options_.repair);
      rec.flags |= InodeRecord::kInodeMayHaveXattrs;
      fix = true;
    }
    if (S_ISDIR(rec.mode)) {
      uint32_t want = 2 + info.subdirs;
      if (ino != kRootIno && info.links > 1) {
        Find("dir-links", fmt::format("directory {} has {} names", PathOf(ino), info.links));
      }
      if (rec.nlink != want) {
        Find("nlink", fmt::format("directory {} has link count {}, expected {}", PathOf(ino), rec.nlink, want), {},
             options_.repair);
        rec.nlink = want;
        fix = true;
      }
      if (rec.size != info.entries) {
        Find("dir-size", fmt::format("directory {} counts {} entries but holds {}", PathOf(ino), rec.size,
                                     info.entries),
             {}, options_.repair);
        rec.size = info.entries;
        fix = true;
      }
      if (ino != kRootIno && info.links >= 1 && !info.primary_found) {
        Find("dir-parent", fmt::format("directory {} records the wrong parent or name", PathOf(ino)), {},
             options_.repair);
        rec.parent = info.first_parent;
        rec.name = info.first_name;
        fix = true;
      }
      if (ino != kRootIno && info.links == 0) unreachable.push_back(ino);
    } else {
      if (info.links == 0 && !info.orphan) {
        if (rec.nlink == 0) {
          Find("lost-orphan", fmt::format("deleted inode {} was never released", ino), {}, options_.repair);
          if (options_.repair) batch_.Put(Sl(schema::OrphanKey(ino)), rocksdb::Slice());  // next mount releases it
        } else {
          unreachable.push_back(ino);
        }
      } else if (rec.nlink != info.links && !(info.orphan && info.links == 0)) {
        Find("nlink", fmt::format("{} has link count {} but {} names", PathOf(ino), rec.nlink, info.links),
             {PathOf(ino)}, options_.repair);
        rec.nlink = info.links;
        fix = true;
      }
      if (info.links > 0 && !info.primary_found && (rec.parent != 0 || !rec.name.empty())) {
        Find("primary-name", fmt::format("{} records a name it does not have", PathOf(ino)), {}, options_.repair);
        rec.parent = info.first_parent;
        rec.name = info.first_name;
        fix = true;
      }
      if (S_ISREG(rec.mode) && rec.chunks != info.extents) {
        Find("chunk-count", fmt::format("{} counts {} chunks but has {}", PathOf(ino), rec.chunks, info.extents), {},
             options_.repair);
        rec.chunks = info.extents;
        fix = true;
      }
    }
    if (fix && options_.repair) {
      std::string v;
      rec.EncodeTo(&v);
      batch_.Put(Sl(schema::InodeKey(ino)), Sl(v));
    }
  }
  if (unreachable.empty()) return Status::Ok();
  // Unreachable inodes go to /lost+found, named by number: never deleted.
  for (uint64_t ino : unreachable) {
    Find("unreachable", fmt::format("inode {} is not in any directory", ino), {}, options_.repair);
    if (options_.repair) lost_.push_back(ino);
  }
  return Status::Ok();
}

Status Checker::CheckCounters() {
  const Superblock& sb = v_->superblock();
  for (uint32_t seg = 0; seg < sb.segment_count; ++seg) {
    QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(schema::SegmentKey(seg)));
    schema::SegmentRecord rec;
    uint64_t recorded = value.has_value() && schema::SegmentRecord::Decode(*value, &rec) ? rec.live_bytes : 0;
    if (recorded != live_[seg]) {
      Find("segment-usage", fmt::format("segment {} records {} live bytes; its chunks hold {}", seg, recorded,
                                        live_[seg]),
           {}, options_.repair);
      if (options_.repair) {
        if (live_[seg] == 0) {
          batch_.Delete(Sl(schema::SegmentKey(seg)));
        } else {
          std::string v;
          schema::SegmentRecord{live_[seg]}.EncodeTo(&v);
          batch_.Put(Sl(schema::SegmentKey(seg)), Sl(v));
        }
      }
    }
  }
  stats_.history_bytes = history_bytes_;
  QCFS_ASSIGN_OR_RETURN(auto sv, db_->Get(schema::SystemKey(schema::kStatsName)));
  schema::StoreStats recorded;
  if (!sv.has_value() || !schema::StoreStats::Decode(*sv, &recorded) || !(recorded == stats_)) {
    Find("statistics",
         fmt::format("space statistics are off: recorded {} chunks, {} unique, {} stored, {} referenced, {} kept; "
                     "counted {}, {}, {}, {}, {}",
                     recorded.chunks, recorded.unique_bytes, recorded.stored_bytes, recorded.referenced_bytes,
                     recorded.history_bytes, stats_.chunks, stats_.unique_bytes, stats_.stored_bytes,
                     stats_.referenced_bytes, stats_.history_bytes),
         {}, options_.repair);
    if (options_.repair) {
      std::string v;
      stats_.EncodeTo(&v);
      batch_.Put(Sl(schema::SystemKey(schema::kStatsName)), Sl(v));
    }
  }
  QCFS_ASSIGN_OR_RETURN(auto vsv, db_->Get(schema::SystemKey(schema::kVolumeStateName)));
  if (!vsv.has_value() || !schema::VolumeState::Decode(*vsv, &state_)) {
    return Status::Error(EUCLEAN, "the volume state record is missing or damaged");
  }
  uint64_t max_ino = inodes_.empty() ? kRootIno : inodes_.rbegin()->first;
  if (state_.next_ino <= max_ino) {
    Find("next-inode", fmt::format("next inode number {} is already in use", state_.next_ino), {}, options_.repair);
    state_.next_ino = max_ino + 1;
    state_dirty_ = true;
  }
  if (state_.inodes != inodes_.size()) {
    Find("inode-count", fmt::format("volume counts {} inodes but holds {}", state_.inodes, inodes_.size()), {},
         options_.repair);
    state_.inodes = inodes_.size();
    state_dirty_ = true;
  }
  return Status::Ok();
}

// The device's segments: chunks only in data segments, metadata files only
// in metadata segments, and no two files (or a file and the journal) on the
// same block.
Status Checker::CheckSpace() {
  MetaFs* space = v_->space();
  std::vector<SegmentUse> uses = space->SegmentUses();
  const MetaFsLayout layout = LayoutFor(v_->superblock());
  for (uint32_t seg = 0; seg < live_.size(); ++seg) {
    SegmentUse use = seg < uses.size() ? uses[seg] : SegmentUse::kFree;
    if (live_[seg] > 0 && use != SegmentUse::kData) {
      Find("segment-owner",
           fmt::format("segment {} holds {} of chunk data but is recorded as {}", seg, FormatSize(live_[seg]),
                       use == SegmentUse::kMeta ? "holding metadata" : "free"));
    }
  }
  struct Owned {
    uint64_t end;
    std::string owner;
  };
  // Each data segment's header names the segment and the volume. Nothing
  // reads it to find data (each record is checked on its own), so damage
  // there loses nothing; repair writes it again.
  if (options_.verify_data) {
    const Superblock sb = v_->superblock();
    for (uint32_t seg = 0; seg < live_.size(); ++seg) {
      if (live_[seg] == 0) continue;
      std::vector<std::byte> block(4096);
      Status read = v_->store()->device()->Read(sb.SegmentOffset(seg), block);
      internal::SegmentHeader h;
      bool ok = read.ok() && internal::DecodeSegmentHeader(block, &h) && h.segment == seg &&
                std::memcmp(h.uuid, sb.uuid.data(), 16) == 0;
      if (ok) continue;
      Find("segment-header",
           fmt::format("segment {} has a damaged header{} (its chunks are checked one by one)", seg,
                       read.ok() ? "" : ": " + read.ToString()),
           {}, options_.repair && read.ok());
      if (options_.repair && read.ok()) {
        internal::SegmentHeader fresh;
        fresh.segment = seg;
        std::memcpy(fresh.uuid, sb.uuid.data(), 16);
        internal::EncodeSegmentHeader(fresh, block.data());
        QCFS_RETURN_IF_ERROR(v_->store()->device()->Write(sb.SegmentOffset(seg), block));
        QCFS_RETURN_IF_ERROR(v_->store()->device()->Sync());
      }
    }
  }
  std::map<uint64_t, Owned> blocks;  // by start offset
  auto claim = [&](const std::string& owner, const MetaFs::Extent& e) {
    uint64_t first = e.offset < layout.data_offset ? 0 : (e.offset - layout.data_offset) / layout.segment_size;
    uint64_t last = e.length == 0 ? first : (e.offset + e.length - 1 - layout.data_offset) / layout.segment_size;
    if (e.offset < layout.data_offset || last >= uses.size()) {
      Find("metadata-extent", fmt::format("metadata file {} has an extent outside the segment area (offset {}, {} bytes)",
                                          owner, e.offset, e.length));
      return;
    }
    for (uint64_t seg = first; seg <= last; ++seg) {
      if (uses[seg] != SegmentUse::kMeta) {
        Find("metadata-extent", fmt::format("metadata file {} lies in segment {}, which is not a metadata segment",
                                            owner, seg));
        return;
      }
    }
    auto next = blocks.lower_bound(e.offset);
    if (next != blocks.end() && next->first < e.offset + e.length) {
      Find("metadata-overlap", fmt::format("metadata files {} and {} share device blocks", owner, next->second.owner));
      return;
    }
    if (next != blocks.begin() && std::prev(next)->second.end > e.offset) {
      Find("metadata-overlap",
           fmt::format("metadata files {} and {} share device blocks", owner, std::prev(next)->second.owner));
      return;
    }
    blocks[e.offset] = {e.offset + e.length, owner};
  };
  for (auto& [name, extents] : space->FileExtents()) {
    for (auto& e : extents) claim(name, e);
  }
  for (auto& [name, extents] : space->FileMirrorExtents()) {
    for (auto& e : extents) {
      if (e.length != 0) claim(name + " (mirror)", e);
    }
  }
  for (auto& e : space->JournalExtents()) claim("<journal>", e);
  for (auto& e : space->JournalMirrorExtents()) claim("<journal mirror>", e);
  return Status::Ok();
}

// Records of the metadata journal that one of its two copies lost: read
// from the other, so nothing is lost; a read-write mount (repair) writes
// both copies afresh.
void Checker::CheckJournalCopies() {
  const MetaFs::JournalCopies& copies = v_->space()->journal_copies();
  const std::string then =
      copies.rewritten ? "; both copies were rewritten" : "; the next read-write mount rewrites both copies";
  auto records = [](uint64_t n) { return fmt::format("{} record{}", n, n == 1 ? "" : "s"); };
  if (copies.primary_damaged > 0) {
    Find("journal-copy",
         fmt::format("metadata journal: {} repaired from its mirror copy (the primary copy is damaged){}",
                     records(copies.primary_damaged), then),
         {}, copies.rewritten);
  }
  if (copies.mirror_damaged > 0) {
    Find("journal-copy",
         fmt::format("metadata journal: {} damaged in its mirror copy (the primary copy is intact){}",
                     records(copies.mirror_damaged), then),
         {}, copies.rewritten);
  }
}

// Blocks of RocksDB's files (in MetaFs) bad in one copy: read from the
// other, so nothing is lost; repair rewrites the bad copy. Bad in both: the
// file has lost data (RocksDB reports the corruption where it reads it).
Status Checker::CheckFileCopies() {
  QCFS_ASSIGN_OR_RETURN(MetaFs::FileCopies copies, v_->space()->ScrubFiles(options_.repair));
  auto blocks = [](uint64_t n) { return fmt::format("{} block{}", n, n == 1 ? "" : "s"); };
  const bool fixed = copies.repaired > 0;
  const std::string then = fixed ? "; the damaged copy was rewritten" : "; qcfs check --repair rewrites it";
  if (copies.primary_damaged > 0) {
    Find("meta-copy",
         fmt::format("metadata files: {} read from the mirror copy (the primary copy is damaged){}",
                     blocks(copies.primary_damaged), then),
         {}, fixed);
  }
  if (copies.mirror_damaged > 0) {
    Find("meta-copy",
         fmt::format("metadata files: {} damaged in the mirror copy (the primary copy is intact){}",
                     blocks(copies.mirror_damaged), then),
         {}, fixed);
  }
  if (copies.both_damaged > 0) {
    Find("meta-file", fmt::format("metadata files: {} damaged in both copies (that metadata is lost)",
                                  blocks(copies.both_damaged)));
  }
  return Status::Ok();
}

Status Checker::Run() {
  if (!v_->space()->rolled_back().empty()) Find("metadata-journal", v_->space()->rolled_back(), {}, true);
  CheckJournalCopies();
  QCFS_RETURN_IF_ERROR(CheckFileCopies());
  QCFS_RETURN_IF_ERROR(ScanInodes());
  QCFS_RETURN_IF_ERROR(ScanDirents());
  QCFS_RETURN_IF_ERROR(ScanXattrsAndOrphans());
  QCFS_RETURN_IF_ERROR(ScanExtents());
  QCFS_RETURN_IF_ERROR(ScanSnapshots());
  QCFS_RETURN_IF_ERROR(ScanHistory());
  QCFS_RETURN_IF_ERROR(ScanJournal());
  QCFS_RETURN_IF_ERROR(ScanChunks());
  QCFS_RETURN_IF_ERROR(ScanLocations());
  QCFS_RETURN_IF_ERROR(CheckCounters());
  QCFS_RETURN_IF_ERROR(CheckSpace());

  // Damaged data: report every file that holds it. Never deleted.
  if (!damaged_.empty()) {
    std::map<Fingerprint, std::set<uint64_t>> holders;
    auto it = db_->Iterate(std::string(1, schema::kExtentPrefix));
    for (it->Seek(); it->Valid(); it->Next()) {
      ExtentRecord e;
      if (it->key_suffix().size() != 16 || !ExtentRecord::Decode(it->value(), &e) || !damaged_.count(e.fp)) continue;
      uint64_t ino;
      schema::ParseU64Suffix(it->key_suffix().substr(0, 8), &ino);
      holders[e.fp].insert(ino);
    }
    QCFS_RETURN_IF_ERROR(it->status());
    for (const Fingerprint& fp : damaged_) {
      std::vector<std::string> paths;
      for (uint64_t ino : holders[fp]) paths.push_back(PathOf(ino));
      auto text = damage_text_.find(fp);
      Find("damaged-chunk", text != damage_text_.end() ? text->second : "chunk " + fp.ShortHex() + " is damaged",
           paths);
    }
  }
  QCFS_RETURN_IF_ERROR(CheckLinks());
  return Commit();
}

Status Checker::Commit() {
  if (!options_.repair) return Status::Ok();
  if (!lost_.empty()) {
    const int64_t now = internal::NowNs();
    InodeRecord& root = inodes_[kRootIno].rec;
    uint64_t lost_ino = 0;
    QCFS_ASSIGN_OR_RETURN(auto existing, db_->Get(schema::DirentKey(kRootIno, "lost+found")));
    DirentRecord d;
    InodeRecord lost;
    if (existing.has_value() && DirentRecord::Decode(*existing, &d) && inodes_.count(d.ino) &&
        S_ISDIR(inodes_[d.ino].rec.mode)) {
      lost_ino = d.ino;
      lost = inodes_[d.ino].rec;
    } else {
      lost_ino = state_.next_ino++;
      state_.inodes += 1;
      lost.epoch = state_.current_epoch;
      lost.mode = S_IFDIR | 0700;
      lost.nlink = 2;
      lost.parent = kRootIno;
      lost.name = "lost+found";
      lost.atime_ns = lost.mtime_ns = lost.ctime_ns = lost.btime_ns = now;
      std::string v;
      DirentRecord{state_.current_epoch, lost_ino, DT_DIR}.EncodeTo(&v);
      batch_.Put(Sl(schema::DirentKey(kRootIno, "lost+found")), Sl(v));
      root.nlink += 1;
      root.size += 1;
      root.mtime_ns = root.ctime_ns = now;
      v.clear();
      root.EncodeTo(&v);
      batch_.Put(Sl(schema::InodeKey(kRootIno)), Sl(v));
      state_dirty_ = true;
    }
    for (uint64_t ino : lost_) {
      InodeRecord rec = inodes_[ino].rec;
      std::string v;
      DirentRecord{state_.current_epoch, ino, static_cast<uint8_t>(IFTODT(rec.mode))}.EncodeTo(&v);
      batch_.Put(Sl(schema::DirentKey(lost_ino, fmt::format("#{}", ino))), Sl(v));
      if (S_ISDIR(rec.mode)) lost.nlink += 1;
      else rec.nlink = 1;
      rec.parent = lost_ino;
      rec.name = fmt::format("#{}", ino);
      v.clear();
      rec.EncodeTo(&v);
      batch_.Put(Sl(schema::InodeKey(ino)), Sl(v));
      lost.size += 1;
    }
    lost.mtime_ns = lost.ctime_ns = now;
    std::string v;
    lost.EncodeTo(&v);
    batch_.Put(Sl(schema::InodeKey(lost_ino)), Sl(v));
  }
  if (state_dirty_) {
    std::string v;
    state_.EncodeTo(&v);
    batch_.Put(Sl(schema::SystemKey(schema::kVolumeStateName)), Sl(v));
  }
  if (batch_.Count() == 0) return Status::Ok();
  return db_->Write(&batch_, true);
}

}  // namespace

namespace {

VolumeOptions CheckOpenOptions(const CheckOptions& options) {
  VolumeOptions vo;
  vo.read_only = !options.repair;
  vo.maintenance = options.repair;
  vo.store.tolerate_damage = true;  // report what disagrees instead of refusing to open
  vo.atime = AtimeMode::kNoatime;
  return vo;
}

Result<CheckReport> CheckOpened(std::unique_ptr<Volume> volume, const CheckOptions& options) {
  CheckReport report;
  Checker checker(volume.get(), options, &report);
  QCFS_RETURN_IF_ERROR(checker.Run());
  QCFS_RETURN_IF_ERROR(volume->Close());
  return report;
}

}  // namespace

Result<CheckReport> CheckVolume(const std::string& device, const CheckOptions& options) {
  QCFS_ASSIGN_OR_RETURN(auto volume, Volume::Open(device, CheckOpenOptions(options)));
  return CheckOpened(std::move(volume), options);
}

Result<CheckReport> CheckVolumeOn(std::unique_ptr<Device> device, const CheckOptions& options) {
  QCFS_ASSIGN_OR_RETURN(auto volume, Volume::OpenOn(std::move(device), CheckOpenOptions(options)));
  return CheckOpened(std::move(volume), options);
}

}  // namespace qcfs
