// MetaDb: the RocksDB database that holds a volume's metadata.
//
// Every filesystem operation commits as one atomic WriteBatch through
// Write(). Writes go to RocksDB's write-ahead log; Write(batch, sync=true)
// or SyncWal() make them durable. Memory is bounded by the options below,
// whatever the size of the volume: index and filter blocks live in the block
// cache, and the number of open table files is capped.
//
// Thread-safety: all methods are thread-safe.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/write_batch.h>

#include "qcfs/core/status.h"

namespace qcfs {

class MetaFs;

struct MetaOptions {
  // Keep the database's files in this MetaFs (on the device); null keeps
  // them in the directory given to Open (tests and tools).
  MetaFs* fs = nullptr;
  // Create the database; fail if it exists.
  bool create = false;
  // Open read-only (offline info); never writes or recovers.
  bool read_only = false;
  // RocksDB block cache for data, index and bloom filter blocks. Default 64 MiB.
  size_t block_cache_bytes = 64ull << 20;
  // Size of one memtable. Default 32 MiB (at most 3 are kept).
  size_t write_buffer_bytes = 32ull << 20;
  // Table files kept open; a process may hold at most ~20,000 descriptors.
  int max_open_files = 512;
};

// Iterates the keys that start with a prefix, in bytewise order.
class PrefixIterator {
 public:
  PrefixIterator(rocksdb::DB* db, std::string prefix, const rocksdb::Snapshot* snapshot);
  // Positions at the first key >= prefix+suffix.
  void Seek(std::string_view suffix = {});
  bool Valid() const;
  void Next();
  // The key without the prefix.
  std::string_view key_suffix() const;
  std::string_view key() const;
  std::string_view value() const;
  // OK, or the error that ended the iteration early.
  Status status() const;

 private:
  std::string prefix_;
  std::string upper_;
  rocksdb::Slice upper_slice_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

class MetaDb {
 public:
  static Result<std::unique_ptr<MetaDb>> Open(const std::string& path, const MetaOptions& options);
  MetaDb(const MetaDb&) = delete;
  MetaDb& operator=(const MetaDb&) = delete;
  ~MetaDb();

  // The value of `key`, or nullopt when absent.
  Result<std::optional<std::string>> Get(std::string_view key) const;
  // Writes, syncs and flushes: after the first one fails (a device error,
  // the device full) every later one fails with that error, and reads go on.
  // RocksDB must not write through a log that failed; remounting recovers
  // to the last durable state.
  Status Write(rocksdb::WriteBatch* batch, bool sync);
  // Makes every write so far durable.
  Status SyncWal();
  // Whether a write was made since the last SyncWal (or synced write) began.
  bool HasUnsyncedWrites() const { return writes_.load() != synced_writes_.load(); }
  // Flushes memtables to table files (used before a clean close).
  Status Flush();
  // The error that stopped writes, or OK.
  Status failed() const;
  std::unique_ptr<PrefixIterator> Iterate(std::string prefix) const;

  const std::string& path() const { return path_; }
  bool read_only() const { return read_only_; }
  // Approximate memory held by memtables and the block cache.
  uint64_t MemoryUsage() const;
  rocksdb::DB* raw() { return db_.get(); }

 private:
  MetaDb(std::string path, std::unique_ptr<rocksdb::DB> db, std::shared_ptr<rocksdb::Cache> cache, bool read_only,
         std::unique_ptr<rocksdb::Env> env);

  std::unique_ptr<rocksdb::Env> env_;  // over MetaFs; outlives db_
  std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
  std::shared_ptr<rocksdb::Cache> cache_;
  bool read_only_;
  // Records the first failure; returns `s`.
  Status Check(Status s);
  mutable std::mutex failed_mu_;
  Status failed_;  // guarded by failed_mu_
  // Writes begun, and writes a completed sync covers (monotonic counters).
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> synced_writes_{0};
  void MarkSynced(uint64_t covered);
};

// Maps a RocksDB status to ours (EIO for corruption and I/O errors, ENOSPC...).
Status FromRocks(const rocksdb::Status& s, std::string_view context);

}  // namespace qcfs
