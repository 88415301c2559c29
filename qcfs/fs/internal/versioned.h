// Versioned writes: how the live tree changes without disturbing snapshots.
//
// Every versioned key (inode, entry, extent, xattr) holds its live version,
// stamped with the epoch it was written in. Taking a snapshot ends an epoch.
// The first time a key changes in a new epoch, its old version is kept as a
// history key if a snapshot can see it (it was born at or before the newest
// snapshot), and the change is noted in that epoch's journal. So a snapshot
// costs nothing until the live tree diverges from it, the live path reads
// only live keys, and the work of diff, delete and restore is the journal
// between two epochs. Internal to the fs layer.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <rocksdb/write_batch.h>

#include "qcfs/core/status.h"
#include "qcfs/meta/meta_db.h"
#include "qcfs/meta/schema.h"

namespace qcfs::internal {

// The epochs a metadata commit runs under.
struct Epochs {
  uint64_t current = 1;          // new versions are stamped with this
  uint64_t latest_snapshot = 0;  // epoch of the newest snapshot; 0 when there is none
};

class VersionedBatch {
 public:
  VersionedBatch(MetaDb* db, rocksdb::WriteBatch* batch, Epochs epochs)
      : db_(db), batch_(batch), epochs_(epochs) {}

  rocksdb::WriteBatch* batch() { return batch_; }
  uint64_t epoch() const { return epochs_.current; }
  const Epochs& epochs() const { return epochs_; }

  // Makes `value` (which begins with epoch()) the live version of `key`.
  // `old` is the live value if the caller read it (nullptr: read here, and
  // only when snapshots exist). Returns true when the old version was kept
  // for a snapshot, so the chunk it names must keep its reference.
  Result<bool> Put(std::string_view key, std::string_view value, const std::optional<std::string>* old = nullptr) {
    QCFS_ASSIGN_OR_RETURN(bool kept, Retire(key, old));
    batch_->Put(rocksdb::Slice(key), rocksdb::Slice(value));
    return kept;
  }

  // Removes the live version of `key`; same contract as Put.
  Result<bool> Delete(std::string_view key, const std::optional<std::string>* old = nullptr) {
    QCFS_ASSIGN_OR_RETURN(bool kept, Retire(key, old));
    batch_->Delete(rocksdb::Slice(key));
    return kept;
  }

 private:
  Result<bool> Retire(std::string_view key, const std::optional<std::string>* old) {
    if (epochs_.latest_snapshot == 0) return false;  // no snapshot: nothing to keep or note
    std::optional<std::string> read;
    if (old == nullptr) {
      QCFS_ASSIGN_OR_RETURN(read, db_->Get(key));
      old = &read;
    }
    if (!old->has_value()) {  // a new key
      batch_->Put(rocksdb::Slice(schema::JournalKey(epochs_.current, key)), rocksdb::Slice());
      return false;
    }
    uint64_t born = 0;
    if (!schema::ValueEpoch(**old, &born)) return Status::Error(EIO, "malformed versioned record; run qcfs check");
    if (born >= epochs_.current) return false;  // already changed (and noted) in this epoch
    batch_->Put(rocksdb::Slice(schema::JournalKey(epochs_.current, key)), rocksdb::Slice());
    if (born > epochs_.latest_snapshot) return false;  // no snapshot sees it
    std::string h;
    schema::EncodeHistory(epochs_.current, **old, &h);
    batch_->Put(rocksdb::Slice(schema::HistoryKey(key, born)), rocksdb::Slice(h));
    return true;
  }

  MetaDb* db_;
  rocksdb::WriteBatch* batch_;
  Epochs epochs_;
};

}  // namespace qcfs::internal
