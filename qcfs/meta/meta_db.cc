#include "qcfs/meta/meta_db.h"

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>

#include "qcfs/core/log.h"
#include "qcfs/meta/internal/rocks_fs.h"

namespace qcfs {

namespace {

// RocksDB (7.8, env/fs_posix.cc) failing to take its LOCK file: held by this
// process ("lock hold by current process, acquire time ...") or by another
// (fcntl: "While lock file: <path>: Resource temporarily unavailable", or
// EACCES). Matched strictly: other IO errors mention blocks.
bool IsLockError(const rocksdb::Status& s) {
  if (!s.IsIOError()) return false;
  const std::string text = s.ToString();
  auto has = [&](std::string_view what) { return text.find(what) != std::string::npos; };
  return has("lock hold by current process") ||
         (has("While lock file") && (has("Resource temporarily unavailable") || has("Permission denied")));
}

}  // namespace

Status FromRocks(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::Ok();
  int err = EIO;
  if (s.IsNotFound()) err = ENOENT;
  else if (s.IsNoSpace()) err = ENOSPC;
  else if (s.IsBusy() || s.IsTryAgain()) err = EBUSY;
  else if (s.IsInvalidArgument()) err = EINVAL;
  else if (IsLockError(s)) err = EBUSY;
  return Status::Errorf(err, "{}: {}", context, s.ToString());
}

PrefixIterator::PrefixIterator(rocksdb::DB* db, std::string prefix, const rocksdb::Snapshot* snapshot)
    : prefix_(std::move(prefix)) {
  // Upper bound: the prefix with its last byte incremented (prefixes never end in 0xff).
  upper_ = prefix_;
  while (!upper_.empty() && static_cast<unsigned char>(upper_.back()) == 0xff) upper_.pop_back();
  if (!upper_.empty()) upper_.back() = static_cast<char>(static_cast<unsigned char>(upper_.back()) + 1);
  upper_slice_ = rocksdb::Slice(upper_);
  rocksdb::ReadOptions ro;
  if (!upper_.empty()) ro.iterate_upper_bound = &upper_slice_;
  ro.snapshot = snapshot;
  it_.reset(db->NewIterator(ro));
}

void PrefixIterator::Seek(std::string_view suffix) {
  std::string target = prefix_;
  target.append(suffix);
  it_->Seek(target);
}

bool PrefixIterator::Valid() const { return it_->Valid() && it_->key().starts_with(prefix_); }
void PrefixIterator::Next() { it_->Next(); }
std::string_view PrefixIterator::key() const { return it_->key().ToStringView(); }
std::string_view PrefixIterator::key_suffix() const { return key().substr(prefix_.size()); }
std::string_view PrefixIterator::value() const { return it_->value().ToStringView(); }
Status PrefixIterator::status() const { return FromRocks(it_->status(), "metadata iterator"); }

MetaDb::MetaDb(std::string path, std::unique_ptr<rocksdb::DB> db, std::shared_ptr<rocksdb::Cache> cache,
               bool read_only, std::unique_ptr<rocksdb::Env> env)
    : env_(std::move(env)), path_(std::move(path)), db_(std::move(db)), cache_(std::move(cache)), read_only_(read_only) {}

MetaDb::~MetaDb() {
  if (db_ && !read_only_) {
    // A clean close leaves nothing to replay from the log.
    rocksdb::FlushOptions fo;
    db_->Flush(fo).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
  }
}

Result<std::unique_ptr<MetaDb>> MetaDb::Open(const std::string& path, const MetaOptions& options) {
  rocksdb::Options opts;
  std::unique_ptr<rocksdb::Env> env;
  if (options.fs != nullptr) {
    env = rocksdb::NewCompositeEnv(internal::NewMetaFsFileSystem(options.fs, path));
    opts.env = env.get();
    opts.info_log = internal::NewRocksLogger();
    // Small files keep metadata space proportionate on small volumes.
    opts.target_file_size_base = 16ull << 20;
  }
  opts.create_if_missing = options.create;
  opts.error_if_exists = options.create;
  opts.paranoid_checks = true;
  opts.max_open_files = options.max_open_files;
  opts.write_buffer_size = options.write_buffer_bytes;
  opts.max_write_buffer_number = 3;
  opts.max_background_jobs = 2;
  opts.compression = rocksdb::kLZ4Compression;
  opts.bottommost_compression = rocksdb::kZSTD;
  opts.keep_log_file_num = 3;
  opts.max_log_file_size = 1 << 20;
  opts.level_compaction_dynamic_level_bytes = true;
  opts.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;

  auto cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.format_version = 5;
  table.block_size = 16 << 10;
  opts.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  opts.memtable_whole_key_filtering = true;
  opts.memtable_prefix_bloom_size_ratio = 0.02;

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = options.read_only ? rocksdb::DB::OpenForReadOnly(opts, path, &raw)
                                        : rocksdb::DB::Open(opts, path, &raw);
  if (!s.ok()) {
    if (IsLockError(s)) {
      return Status::Errorf(EBUSY, "metadata {} is in use by another process (mounted?)", path);
    }
    if (!options.create && s.IsInvalidArgument() && s.ToString().find("does not exist") != std::string::npos) {
      return Status::Errorf(ENOENT, "metadata {} does not exist", path);
    }
    return FromRocks(s, "open metadata " + path);
  }
  return std::unique_ptr<MetaDb>(
      new MetaDb(path, std::unique_ptr<rocksdb::DB>(raw), cache, options.read_only, std::move(env)));
}

Result<std::optional<std::string>> MetaDb::Get(std::string_view key) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "metadata get");
  return std::optional<std::string>(std::move(value));
}

Status MetaDb::failed() const {
  std::lock_guard lock(failed_mu_);
  return failed_;
}

Status MetaDb::Check(Status s) {
  if (s.ok()) return s;
  std::lock_guard lock(failed_mu_);
  if (failed_.ok()) {
    failed_ = Status::Errorf(s.code(), "{}; metadata writes are stopped until the volume is mounted again",
                             s.message());
    Log(LogLevel::kError, "{}", failed_.message());
  }
  return s;
}

Status MetaDb::Write(rocksdb::WriteBatch* batch, bool sync) {
  if (read_only_) return Status::Error(EROFS, "metadata is open read-only");
  QCFS_RETURN_IF_ERROR(failed());
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  const uint64_t n = ++writes_;
  // A synced write makes every earlier write durable too (one log).
  Status s = Check(FromRocks(db_->Write(wo, batch), "metadata write"));
  if (s.ok() && sync) MarkSynced(n);
  return s;
}

Status MetaDb::SyncWal() {
  if (read_only_) return Status::Ok();
  QCFS_RETURN_IF_ERROR(failed());
  const uint64_t covered = writes_.load();
  Status s = Check(FromRocks(db_->SyncWAL(), "metadata sync"));
  if (s.ok()) MarkSynced(covered);
  return s;
}

void MetaDb::MarkSynced(uint64_t covered) {
  uint64_t was = synced_writes_.load();
  while (was < covered && !synced_writes_.compare_exchange_weak(was, covered)) {
  }
}

Status MetaDb::Flush() {
  if (read_only_) return Status::Ok();
  QCFS_RETURN_IF_ERROR(failed());
  return Check(FromRocks(db_->Flush(rocksdb::FlushOptions()), "metadata flush"));
}

std::unique_ptr<PrefixIterator> MetaDb::Iterate(std::string prefix) const {
  return std::make_unique<PrefixIterator>(db_.get(), std::move(prefix), nullptr);
}

uint64_t MetaDb::MemoryUsage() const {
  uint64_t mem = 0;
  db_->GetIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &mem);
  return mem + cache_->GetUsage();
}

}  // namespace qcfs
