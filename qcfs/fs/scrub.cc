// Online scrub: every chunk the index lists is read back from the device and
// verified (record checksum and header; with `full`, the SHA-256 of the
// content) while the volume goes on serving, like zpool scrub.
//
// The index is read through a RocksDB snapshot; a chunk that the cleaner
// moved or that was freed meanwhile fails its check against the old
// location, so every failure is confirmed against the current index before
// it counts as damage.
#include <map>
#include <set>

#include <fmt/ranges.h>

#include "qcfs/core/log.h"
#include "qcfs/fs/internal/time.h"
#include "qcfs/fs/volume.h"
#include "qcfs/meta/schema.h"

namespace qcfs {

using schema::ChunkIndexRecord;

Status Volume::StartScrub(bool full) {
  std::lock_guard lock(scrub_mu_);
  if (closed_) return Status::Error(ESHUTDOWN, "the volume is closing");
  if (scrub_.state == ScrubStatus::State::kRunning) return Status::Error(EBUSY, "a scrub is already running");
  if (scrubber_.joinable()) scrubber_.join();  // the previous one has finished
  scrub_ = ScrubStatus{};
  scrub_.state = ScrubStatus::State::kRunning;
  scrub_.full = full;
  scrub_.chunks_total = store_->Usage().stats.chunks;
  scrub_.started_ns = internal::NowNs();
  scrub_cancel_ = false;
  scrubber_ = std::thread([this] { ScrubLoop(); });
  return Status::Ok();
}

ScrubStatus Volume::scrub_status() const {
  std::lock_guard lock(scrub_mu_);
  return scrub_;
}

void Volume::CancelScrub() { scrub_cancel_ = true; }

void Volume::ScrubLoop() {
  bool full;
  {
    std::lock_guard lock(scrub_mu_);
    full = scrub_.full;
  }
  auto finish = [&](ScrubStatus::State state, std::string error) {
    std::lock_guard lock(scrub_mu_);
    scrub_.state = state;
    scrub_.error = std::move(error);
    scrub_.finished_ns = internal::NowNs();
  };
  std::map<Fingerprint, std::string> damaged;  // chunk -> what is wrong
  {
    const rocksdb::Snapshot* snap = db_->raw()->GetSnapshot();
    PrefixIterator it(db_->raw(), std::string(1, schema::kChunkPrefix), snap);
    uint64_t done = 0, bytes = 0;
    for (it.Seek(); it.Valid(); it.Next()) {
      if (scrub_cancel_) break;
      Fingerprint fp = Fingerprint::FromBytes(it.key_suffix());
      ChunkIndexRecord rec;
      if (!ChunkIndexRecord::Decode(it.value(), &rec)) {
        damaged[fp] = "its index entry cannot be decoded";
      } else {
        std::string why = store_->VerifyChunk(fp, rec, full);
        if (!why.empty()) {
          // Moved or freed since the snapshot? Then only the current location counts.
          auto now = db_->Get(schema::ChunkKey(fp));
          ChunkIndexRecord cur;
          if (now.ok() && now->has_value() && ChunkIndexRecord::Decode(**now, &cur)) {
            why = store_->VerifyChunk(fp, cur, full);
            if (!why.empty()) damaged[fp] = why;
          }
        }
        bytes += rec.record_len;
      }
      ++done;
      std::lock_guard lock(scrub_mu_);
      scrub_.chunks_done = done;
      scrub_.bytes_done = bytes;
      scrub_.chunks_total = std::max(scrub_.chunks_total, done);
    }
    Status st = it.status();
    db_->raw()->ReleaseSnapshot(snap);
    if (!st.ok()) return finish(ScrubStatus::State::kFailed, st.ToString());
  }

  // The files that hold damaged chunks: one pass over the extent maps.
  std::vector<ScrubStatus::Damage> report;
  if (!damaged.empty()) {
    std::map<Fingerprint, std::set<uint64_t>> holders;
    auto it = db_->Iterate(std::string(1, schema::kExtentPrefix));
    for (it->Seek(); it->Valid() && !scrub_cancel_; it->Next()) {
      schema::ExtentRecord e;
      uint64_t ino = 0;
      if (it->key_suffix().size() < 8 || !schema::ParseU64Suffix(it->key_suffix().substr(0, 8), &ino)) continue;
      if (!schema::ExtentRecord::Decode(it->value(), &e) || !damaged.count(e.fp)) continue;
      holders[e.fp].insert(ino);
    }
    auto path_of = [&](uint64_t ino) {
      std::string path;
      for (int depth = 0; ino != kRootIno && depth < 4096; ++depth) {
        auto rec = LoadRecord(ino);
        if (!rec.ok() || rec->name.empty() || rec->parent == 0) return fmt::format("<inode {}>{}", ino, path);
        path = "/" + rec->name + path;
        ino = rec->parent;
      }
      return path.empty() ? std::string("/") : path;
    };
    for (auto& [fp, why] : damaged) {
      ScrubStatus::Damage d{fp.Hex(), why, {}};
      for (uint64_t ino : holders[fp]) d.paths.push_back(path_of(ino));
      report.push_back(std::move(d));
    }
  }
  {
    std::lock_guard lock(scrub_mu_);
    scrub_.damaged = std::move(report);
  }
  for (const auto& d : scrub_status().damaged) {
    Log(LogLevel::kError, "scrub: chunk {} is damaged ({}); held by {}", d.chunk.substr(0, 16), d.detail,
        d.paths.empty() ? std::string("snapshots only") : fmt::format("{}", fmt::join(d.paths, ", ")));
  }
  finish(scrub_cancel_ ? ScrubStatus::State::kCancelled : ScrubStatus::State::kDone, "");
}

}  // namespace qcfs
