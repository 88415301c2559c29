#include "qcfs/meta/internal/rocks_fs.h"

#include <cstdarg>
#include <cstdio>
#include <ctime>

#include "qcfs/core/log.h"

namespace qcfs::internal {
namespace {

using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;

IOStatus ToIO(const Status& s) {
  if (s.ok()) return IOStatus::OK();
  if (s.code() == ENOENT) return IOStatus::PathNotFound(s.ToString());
  if (s.code() == ENOSPC) return IOStatus::NoSpace(s.ToString());
  return IOStatus::IOError(s.ToString());
}

class SeqFile final : public rocksdb::FSSequentialFile {
 public:
  explicit SeqFile(std::shared_ptr<MetaFs::File> f) : f_(std::move(f)) {}
  IOStatus Read(size_t n, const IOOptions&, Slice* result, char* scratch, IODebugContext*) override {
    auto got = f_->Read(pos_, std::span<std::byte>(reinterpret_cast<std::byte*>(scratch), n));
    if (!got.ok()) return ToIO(got.status());
    pos_ += *got;
    *result = Slice(scratch, *got);
    return IOStatus::OK();
  }
  IOStatus Skip(uint64_t n) override {
    pos_ += n;
    return IOStatus::OK();
  }

 private:
  std::shared_ptr<MetaFs::File> f_;
  uint64_t pos_ = 0;
};

class RandFile final : public rocksdb::FSRandomAccessFile {
 public:
  explicit RandFile(std::shared_ptr<MetaFs::File> f) : f_(std::move(f)) {}
  IOStatus Read(uint64_t offset, size_t n, const IOOptions&, Slice* result, char* scratch,
                IODebugContext*) const override {
    auto got = f_->Read(offset, std::span<std::byte>(reinterpret_cast<std::byte*>(scratch), n));
    if (!got.ok()) return ToIO(got.status());
    *result = Slice(scratch, *got);
    return IOStatus::OK();
  }

 private:
  std::shared_ptr<MetaFs::File> f_;
};

// RocksDB flushes its write-ahead log after every write batch. For the log
// that write would buy nothing: MetaFs journals a file's size only on Sync,
// so bytes written out but not synced are gone after a crash or a killed
// daemon either way (invariant 6 in docs/design.md). The log's bytes
// therefore stay in the file's buffer until a sync, a close or 256 KiB,
// which saves a device write per metadata operation. Other files (tables,
// manifest) are read back while RocksDB works and are written on Flush.
bool IsWriteAheadLog(std::string_view name) { return name.ends_with(".log"); }

class WritFile final : public rocksdb::FSWritableFile {
 public:
  WritFile(MetaFs* fs, std::string name, std::shared_ptr<MetaFs::File> f)
      : fs_(fs), name_(std::move(name)), f_(std::move(f)), defer_flush_(IsWriteAheadLog(name_)) {}
  ~WritFile() override { f_->Flush().IgnoreError(); }
  IOStatus Append(const Slice& data, const IOOptions&, IODebugContext*) override {
    return ToIO(f_->Append(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size())));
  }
  IOStatus Append(const Slice& data, const IOOptions& o, const rocksdb::DataVerificationInfo&,
                  IODebugContext* d) override {
    return Append(data, o, d);
  }
  IOStatus Flush(const IOOptions&, IODebugContext*) override {
    return defer_flush_ ? IOStatus::OK() : ToIO(f_->Flush());
  }
  IOStatus Sync(const IOOptions&, IODebugContext*) override { return ToIO(f_->Sync()); }
  IOStatus Fsync(const IOOptions&, IODebugContext*) override { return ToIO(f_->Sync()); }
  IOStatus Close(const IOOptions&, IODebugContext*) override { return ToIO(f_->Flush()); }
  bool IsSyncThreadSafe() const override { return true; }
  uint64_t GetFileSize(const IOOptions&, IODebugContext*) override { return f_->size(); }
  IOStatus Truncate(uint64_t size, const IOOptions&, IODebugContext*) override {
    Status s = f_->Flush();
    if (s.ok() && size < f_->size()) s = fs_->Truncate(name_, size);
    return ToIO(s);
  }

 private:
  MetaFs* fs_;
  std::string name_;
  std::shared_ptr<MetaFs::File> f_;
  const bool defer_flush_;
};

class Dir final : public rocksdb::FSDirectory {
 public:
  explicit Dir(MetaFs* fs) : fs_(fs) {}
  IOStatus Fsync(const IOOptions&, IODebugContext*) override { return ToIO(fs_->Sync()); }
  IOStatus Close(const IOOptions&, IODebugContext*) override { return IOStatus::OK(); }

 private:
  MetaFs* fs_;
};

class Lock final : public rocksdb::FileLock {};

class MetaFsFileSystem final : public rocksdb::FileSystem {
 public:
  MetaFsFileSystem(MetaFs* fs, std::string db_path) : fs_(fs), dir_(std::move(db_path)) {}
  const char* Name() const override { return "QcfsMetaFs"; }

  IOStatus NewSequentialFile(const std::string& fname, const rocksdb::FileOptions&,
                             std::unique_ptr<rocksdb::FSSequentialFile>* result, IODebugContext*) override {
    std::string name;
    if (IOStatus s = Local(fname, &name); !s.ok()) return s;
    auto f = fs_->Open(name);
    if (!f.ok()) return ToIO(f.status());
    result->reset(new SeqFile(*f));
    return IOStatus::OK();
  }
  IOStatus NewRandomAccessFile(const std::string& fname, const rocksdb::FileOptions&,
                               std::unique_ptr<rocksdb::FSRandomAccessFile>* result, IODebugContext*) override {
    std::string name;
    if (IOStatus s = Local(fname, &name); !s.ok()) return s;
    auto f = fs_->Open(name);
    if (!f.ok()) return ToIO(f.status());
    result->reset(new RandFile(*f));
    return IOStatus::OK();
  }
  IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions&,
                           std::unique_ptr<rocksdb::FSWritableFile>* result, IODebugContext*) override {
    std::string name;
    if (IOStatus s = Local(fname, &name); !s.ok()) return s;
    auto f = fs_->Create(name);
    if (!f.ok()) return ToIO(f.status());
    result->reset(new WritFile(fs_, name, *f));
    return IOStatus::OK();
  }
  IOStatus ReopenWritableFile(const std::string& fname, const rocksdb::FileOptions& o,
                              std::unique_ptr<rocksdb::FSWritableFile>* result, IODebugContext* d) override {
    std::string name;
    if (IOStatus s = Local(fname, &name); !s.ok()) return s;
    if (!fs_->Exists(name)) return NewWritableFile(fname, o, result, d);
    auto f = fs_->Open(name);
    if (!f.ok()) return ToIO(f.status());
    result->reset(new WritFile(fs_, name, *f));
    return IOStatus::OK();
  }
  IOStatus NewDirectory(const std::string&, const IOOptions&, std::unique_ptr<rocksdb::FSDirectory>* result,
                        IODebugContext*) override {
    result->reset(new Dir(fs_));
    return IOStatus::OK();
  }
  IOStatus FileExists(const std::string& fname, const IOOptions&, IODebugContext*) override {
    if (IsDir(fname)) return IOStatus::OK();
    std::string name;
    if (IOStatus s = Local(fname, &name); !s.ok()) return IOStatus::NotFound();
    return fs_->Exists(name) ? IOStatus::OK() : IOStatus::NotFound();
  }
  IOStatus GetChildren(const std::string& dir, const IOOptions&, std::vector<std::string>* result,
                       IODebugContext*) override {
    if (!IsDir(dir)) return IOStatus::PathNotFound(dir);
    *result = fs_->List("");
    return IOStatus::OK();
  }
  IOStatus DeleteFile(const std::string& fname, const IOOptions&, IODebugContext*) override {
    std::string name;
    if (IOStatus s = Local(fname, &name); !s.ok()) return s;
    return ToIO(fs_->Delete(name));
  }
  IOStatus Truncate(const std::string& fname, size_t size, const IOOptions&, IODebugContext*) override {
    std::string name;
    if (IOStatus s = Local(fname, &name); !s.ok()) return s;
    return ToIO(fs_->Truncate(name, size));
  }
  IOStatus CreateDir(const std::string&, const IOOptions&, IODebugContext*) override { return IOStatus::OK(); }
  IOStatus CreateDirIfMissing(const std::string&, const IOOptions&, IODebugContext*) override {
    return IOStatus::OK();
  }
  IOStatus DeleteDir(const std::string&, const IOOptions&, IODebugContext*) override { return IOStatus::OK(); }
  IOStatus GetFileSize(const std::string& fname, const IOOptions&, uint64_t* size, IODebugContext*) override {
    std::string name;
    if (IOStatus s = Local(fname, &name); !s.ok()) return s;
    auto r = fs_->FileSize(name);
    if (!r.ok()) return ToIO(r.status());
    *size = *r;
    return IOStatus::OK();
  }
  IOStatus GetFileModificationTime(const std::string&, const IOOptions&, uint64_t* time,
                                   IODebugContext*) override {
    *time = static_cast<uint64_t>(::time(nullptr));
    return IOStatus::OK();
  }
  IOStatus RenameFile(const std::string& src, const std::string& target, const IOOptions&,
                      IODebugContext*) override {
    std::string from, to;
    if (IOStatus s = Local(src, &from); !s.ok()) return s;
    if (IOStatus s = Local(target, &to); !s.ok()) return s;
    return ToIO(fs_->Rename(from, to));
  }
  IOStatus LockFile(const std::string&, const IOOptions&, rocksdb::FileLock** lock, IODebugContext*) override {
    // The device itself is locked (flock, O_EXCL) by whoever opened it.
    *lock = new Lock;
    return IOStatus::OK();
  }
  IOStatus UnlockFile(rocksdb::FileLock* lock, const IOOptions&, IODebugContext*) override {
    delete lock;
    return IOStatus::OK();
  }
  IOStatus GetTestDirectory(const IOOptions&, std::string* path, IODebugContext*) override {
    *path = dir_;
    return IOStatus::OK();
  }
  IOStatus NewLogger(const std::string&, const IOOptions&, std::shared_ptr<rocksdb::Logger>* result,
                     IODebugContext*) override {
    *result = NewRocksLogger();
    return IOStatus::OK();
  }
  IOStatus GetAbsolutePath(const std::string& db_path, const IOOptions&, std::string* output_path,
                           IODebugContext*) override {
    *output_path = db_path;
    return IOStatus::OK();
  }
  IOStatus IsDirectory(const std::string& path, const IOOptions&, bool* is_dir, IODebugContext*) override {
    *is_dir = IsDir(path);
    return IOStatus::OK();
  }

 private:
  bool IsDir(const std::string& path) const {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    return p == dir_;
  }

  IOStatus Local(const std::string& fname, std::string* name) const {
    if (fname.size() <= dir_.size() + 1 || fname.compare(0, dir_.size(), dir_) != 0 || fname[dir_.size()] != '/') {
      return IOStatus::InvalidArgument("not a metadata file: " + fname);
    }
    *name = fname.substr(dir_.size() + 1);
    return IOStatus::OK();
  }

  MetaFs* fs_;
  std::string dir_;
};

class RocksLogger final : public rocksdb::Logger {
 public:
  RocksLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[1024];
    std::vsnprintf(buf, sizeof buf, format, ap);
    qcfs::Log(level >= rocksdb::InfoLogLevel::ERROR_LEVEL ? LogLevel::kError : LogLevel::kWarning, "metadata: {}",
              buf);
  }
};

}  // namespace

std::shared_ptr<rocksdb::FileSystem> NewMetaFsFileSystem(MetaFs* fs, const std::string& db_path) {
  return std::make_shared<MetaFsFileSystem>(fs, db_path);
}

std::shared_ptr<rocksdb::Logger> NewRocksLogger() { return std::make_shared<RocksLogger>(); }

}  // namespace qcfs::internal
