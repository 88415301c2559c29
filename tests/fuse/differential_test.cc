// Differential random-operation test, in the manner of fsx and fsrand: one
// random sequence of file system operations runs in lockstep on a QCFS mount
// and on a reference directory on the host's file system (ext4), through one
// small operation layer (`Side`) whose only difference between the two is
// the root path. After every operation its result (return value and errno)
// and everything it touched (content, size, type, mode, link count,
// directory listings, the descriptor it went through) must match; `check`
// operations compare the whole tree and every open descriptor, unlinked ones
// included. A snapshot taken on QCFS is matched on the reference by a digest
// of the tree at that moment, against which the snapshot's read-only view
// under .snapshots/NAME is compared at random points and at the end; a
// remount must keep the whole tree; the unmounted volume must pass
// `qcfs check --full` at the end.
//
// Environment:
//   QCFS_DIFF_SEED=N             first seed (default 1)
//   QCFS_DIFF_SEEDS=N            how many seeds, N, N+1, ... (default 3)
//   QCFS_DIFF_OPS=N              operations per seed (default 1500)
//   QCFS_DIFF_SHRINK_SECONDS=N   time for shrinking a failure (default 300; 0: off)
//   QCFS_DIFF_HANG_SECONDS=N     one operation taking longer is a hang (default 120)
//   QCFS_DIFF_REPLAY=FILE        replay a printed sequence instead of random ones
//   QCFS_DIFF_WITHOUT=K,K        never generate these operations (names as printed;
//                                "append" for O_APPEND opens), to look past a known bug
//
// A failing sequence is shrunk by delta debugging on fresh volumes (drop
// chunks of operations, keep the smaller sequence while the same kind of
// difference remains), printed one operation a line, and written to a file
// that QCFS_DIFF_REPLAY replays.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "qcfs/core/unique_fd.h"
#include "tests/testutil/mounted_volume.h"

namespace qcfs {
namespace {

using testing::MountedVolume;
using testing::RandomBytes;
using testing::TempDir;

constexpr int kSlots = 4;                  // descriptors a sequence may hold open
constexpr uint64_t kBlock = 4096;          // digest granularity
constexpr uint64_t kMaxEnd = 12ull << 20;  // no operation reaches past this offset

// ---------------------------------------------------------------- operations

enum class Kind {
  kOpen,            // fd=SLOT path=P [trunc] [append]: O_RDWR|O_CREAT, replacing what the slot held
  kClose,           // fd=SLOT
  kWrite,           // TARGET off len data: pwrite (a path target is opened with O_CREAT)
  kTruncate,        // TARGET len: ftruncate(fd) or truncate(path)
  kFallocate,       // TARGET mode off len
  kMmap,            // TARGET off len data [msync]: MAP_SHARED store, clipped to the file's size
  kRename,          // from to [noreplace|exchange]
  kLink,            // from to
  kSymlink,         // path target
  kUnlink,          // path
  kMkdir,           // path mode
  kRmdir,           // path
  kChmod,           // path mode
  kFsync,           // TARGET
  kSnapshot,        // name: `qcfs snapshot create`; the reference copies its tree
  kSnapshotDelete,  // name
  kSnapshotRestore, // name: `qcfs snapshot restore` after closing every descriptor; the
                    //   reference records its tree as the automatic snapshot and takes the copy's
  kCheckSnapshot,   // name: .snapshots/NAME against the reference's copy
  kCheck,           // the whole tree and every open descriptor
  kRemount,         // close every descriptor, unmount, mount, check the whole tree
  kTrim,            // `qcfs trim`: the cleaner moves every live chunk of partly used segments
};

constexpr std::pair<Kind, std::string_view> kKindNames[] = {
    {Kind::kOpen, "open"},
    {Kind::kClose, "close"},
    {Kind::kWrite, "write"},
    {Kind::kTruncate, "truncate"},
    {Kind::kFallocate, "fallocate"},
    {Kind::kMmap, "mmap"},
    {Kind::kRename, "rename"},
    {Kind::kLink, "link"},
    {Kind::kSymlink, "symlink"},
    {Kind::kUnlink, "unlink"},
    {Kind::kMkdir, "mkdir"},
    {Kind::kRmdir, "rmdir"},
    {Kind::kChmod, "chmod"},
    {Kind::kFsync, "fsync"},
    {Kind::kSnapshot, "snapshot"},
    {Kind::kSnapshotDelete, "snapshot-delete"},
    {Kind::kSnapshotRestore, "snapshot-restore"},
    {Kind::kCheckSnapshot, "check-snapshot"},
    {Kind::kCheck, "check"},
    {Kind::kRemount, "remount"},
    {Kind::kTrim, "trim"},
};

std::string_view KindName(Kind kind) {
  for (const auto& [k, name] : kKindNames) {
    if (k == kind) return name;
  }
  return "?";
}

enum class DataKind { kRandom, kText, kZero, kCopy };

constexpr int kOpenTrunc = 1;
constexpr int kOpenAppend = 2;
constexpr int kMmapSync = 1;

constexpr std::pair<int, std::string_view> kFallocModes[] = {
    {0, "alloc"},
    {FALLOC_FL_KEEP_SIZE, "keep"},
    {FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, "punch"},
    {FALLOC_FL_ZERO_RANGE, "zero"},
    {FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, "zero+keep"},
};

struct Op {
  Kind kind = Kind::kCheck;
  std::string path;   // the target, or the source of rename and link; relative to the root
  std::string path2;  // rename and link: the destination; symlink: the link's content
  int fd = -1;        // the slot of a held descriptor, or -1: `path` is opened for this operation alone
  uint64_t offset = 0;
  uint64_t length = 0;
  int flags = 0;  // open: kOpen*; fallocate: FALLOC_FL_*; mkdir, chmod: mode; rename: RENAME_*; mmap: kMmapSync
  DataKind data = DataKind::kRandom;
  uint64_t seed = 0;        // random and text data
  std::string src;          // copy: bytes [src_offset, +length) of this file on the reference
  uint64_t src_offset = 0;  //   (zeros past its end), so that QCFS sees content it already holds
  std::string name;         // snapshots

  bool has_target() const { return fd >= 0 || !path.empty(); }
};

std::string FormatTarget(const Op& op) { return op.fd >= 0 ? "fd=" + std::to_string(op.fd) : "path=" + op.path; }

std::string FormatData(const Op& op) {
  switch (op.data) {
    case DataKind::kRandom: return "data=rand:" + std::to_string(op.seed);
    case DataKind::kText: return "data=text:" + std::to_string(op.seed);
    case DataKind::kZero: return "data=zero";
    case DataKind::kCopy: return "data=copy:" + op.src + "@" + std::to_string(op.src_offset);
  }
  return "";
}

std::string Octal(int mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0%o", mode);
  return buf;
}

// One line a developer can read and QCFS_DIFF_REPLAY can parse back.
std::string Format(const Op& op) {
  std::string s(KindName(op.kind));
  auto add = [&s](const std::string& token) { s += " " + token; };
  auto off_len = [&] {
    add("off=" + std::to_string(op.offset));
    add("len=" + std::to_string(op.length));
  };
  switch (op.kind) {
    case Kind::kOpen:
      add("fd=" + std::to_string(op.fd));
      add("path=" + op.path);
      if (op.flags & kOpenTrunc) add("trunc");
      if (op.flags & kOpenAppend) add("append");
      break;
    case Kind::kClose: add("fd=" + std::to_string(op.fd)); break;
    case Kind::kWrite:
    case Kind::kMmap:
      add(FormatTarget(op));
      off_len();
      add(FormatData(op));
      if (op.kind == Kind::kMmap && (op.flags & kMmapSync)) add("msync");
      break;
    case Kind::kTruncate:
      add(FormatTarget(op));
      add("len=" + std::to_string(op.length));
      break;
    case Kind::kFallocate:
      add(FormatTarget(op));
      for (const auto& [mode, name] : kFallocModes) {
        if (mode == op.flags) add("mode=" + std::string(name));
      }
      off_len();
      break;
    case Kind::kRename:
    case Kind::kLink:
      add("from=" + op.path);
      add("to=" + op.path2);
      if (op.flags & RENAME_NOREPLACE) add("noreplace");
      if (op.flags & RENAME_EXCHANGE) add("exchange");
      break;
    case Kind::kSymlink:
      add("path=" + op.path);
      add("target=" + op.path2);
      break;
    case Kind::kUnlink:
    case Kind::kRmdir: add("path=" + op.path); break;
    case Kind::kMkdir:
    case Kind::kChmod:
      add("path=" + op.path);
      add("mode=" + Octal(op.flags));
      break;
    case Kind::kFsync: add(FormatTarget(op)); break;
    case Kind::kSnapshot:
    case Kind::kSnapshotDelete:
    case Kind::kSnapshotRestore:
    case Kind::kCheckSnapshot: add("name=" + op.name); break;
    case Kind::kCheck:
    case Kind::kRemount:
    case Kind::kTrim: break;
  }
  return s;
}

bool ParseU64(std::string_view text, uint64_t* out, int base = 10) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out, base);
  return ec == std::errc() && end == text.data() + text.size();
}

// The inverse of Format; nullopt (with *error set) for a line it cannot read.
std::optional<Op> Parse(std::string_view line, std::string* error) {
  std::istringstream in{std::string(line)};
  std::string word;
  in >> word;
  Op op;
  bool known = false;
  for (const auto& [k, name] : kKindNames) {
    if (name == word) op.kind = k, known = true;
  }
  if (!known) {
    *error = "unknown operation '" + word + "'";
    return std::nullopt;
  }
  while (in >> word) {
    size_t eq = word.find('=');
    std::string key = word.substr(0, eq);
    std::string value = eq == std::string::npos ? "" : word.substr(eq + 1);
    uint64_t n = 0;
    bool ok = true;
    if (key == "fd") {
      ok = ParseU64(value, &n) && n < kSlots;
      op.fd = static_cast<int>(n);
    } else if (key == "path" || key == "from") {
      op.path = value;
    } else if (key == "to" || key == "target") {
      op.path2 = value;
    } else if (key == "off") {
      ok = ParseU64(value, &op.offset);
    } else if (key == "len") {
      ok = ParseU64(value, &op.length);
    } else if (key == "name") {
      op.name = value;
    } else if (key == "trunc") {
      op.flags |= kOpenTrunc;
    } else if (key == "append") {
      op.flags |= kOpenAppend;
    } else if (key == "msync") {
      op.flags |= kMmapSync;
    } else if (key == "noreplace") {
      op.flags |= RENAME_NOREPLACE;
    } else if (key == "exchange") {
      op.flags |= RENAME_EXCHANGE;
    } else if (key == "mode" && op.kind == Kind::kFallocate) {
      ok = false;
      for (const auto& [mode, name] : kFallocModes) {
        if (name == value) op.flags = mode, ok = true;
      }
    } else if (key == "mode") {
      ok = ParseU64(value, &n, 8);
      op.flags = static_cast<int>(n);
    } else if (key == "data") {
      if (value.starts_with("rand:")) {
        op.data = DataKind::kRandom;
        ok = ParseU64(std::string_view(value).substr(5), &op.seed);
      } else if (value.starts_with("text:")) {
        op.data = DataKind::kText;
        ok = ParseU64(std::string_view(value).substr(5), &op.seed);
      } else if (value == "zero") {
        op.data = DataKind::kZero;
      } else if (value.starts_with("copy:") && value.find('@') != std::string::npos) {
        op.data = DataKind::kCopy;
        size_t at = value.rfind('@');
        op.src = value.substr(5, at - 5);
        ok = ParseU64(std::string_view(value).substr(at + 1), &op.src_offset);
      } else {
        ok = false;
      }
    } else {
      ok = false;
    }
    if (!ok) {
      *error = "cannot read '" + word + "'";
      return std::nullopt;
    }
  }
  bool slot_op = op.kind == Kind::kOpen || op.kind == Kind::kClose;
  if (slot_op && op.fd < 0) {
    *error = "needs fd=SLOT";
    return std::nullopt;
  }
  return op;
}

// ---------------------------------------------------------------- the operation layer

// What one side answered: errno (0 for success) and the call's value (bytes
// written or stored; 0 otherwise).
struct Outcome {
  int err = 0;
  int64_t value = 0;
};

std::string Describe(const Outcome& o) {
  if (o.err != 0) return std::string(strerrordesc_np(o.err)) + " (" + strerrorname_np(o.err) + ")";
  return "ok, " + std::to_string(o.value);
}

// One side of the comparison: a root directory and the descriptors held open
// under it. Every operation goes through Apply, whatever the root.
class Side {
 public:
  explicit Side(std::string root) : root_(std::move(root)) {}
  Side(const Side&) = delete;
  Side& operator=(const Side&) = delete;

  const std::string& root() const { return root_; }
  std::string Abs(const std::string& rel) const { return rel.empty() ? root_ : root_ + "/" + rel; }
  int fd(int slot) const { return fds_[slot].get(); }

  // REQUIRES: for write and mmap, data holds op.length bytes.
  Outcome Apply(const Op& op, std::string_view data);
  // Closes every held descriptor; returns the errno of each close (0: fine).
  std::array<int, kSlots> CloseAll();

 private:
  // The descriptor an operation works on: its slot's, or `path` opened for
  // this operation alone (closed by Finish, whose errno counts: a FUSE file
  // system reports flush errors at close).
  class Target {
   public:
    Target(const Side& side, const Op& op, int flags) {
      if (op.fd >= 0) {
        fd_ = side.fd(op.fd);
        if (fd_ < 0) err_ = EBADF;
      } else {
        owned_.reset(::open(side.Abs(op.path).c_str(), flags | O_CLOEXEC, 0644));
        fd_ = owned_.get();
        if (fd_ < 0) err_ = errno;
      }
    }
    int fd() const { return fd_; }
    int err() const { return err_; }
    Outcome Finish(int err, int64_t value) {
      if (owned_.valid() && ::close(owned_.release()) != 0 && err == 0) err = errno;
      return {err, err == 0 ? value : -1};
    }

   private:
    UniqueFd owned_;
    int fd_ = -1;
    int err_ = 0;
  };

  std::string root_;
  std::array<UniqueFd, kSlots> fds_;
};

Outcome Sys(int r) { return r < 0 ? Outcome{errno, -1} : Outcome{0, 0}; }

Outcome Side::Apply(const Op& op, std::string_view data) {
  switch (op.kind) {
    case Kind::kOpen: {
      fds_[op.fd].reset();
      int flags = O_RDWR | O_CREAT | O_CLOEXEC;
      if (op.flags & kOpenTrunc) flags |= O_TRUNC;
      if (op.flags & kOpenAppend) flags |= O_APPEND;
      int fd = ::open(Abs(op.path).c_str(), flags, 0644);
      if (fd < 0) return {errno, -1};
      fds_[op.fd].reset(fd);
      return {};
    }
    case Kind::kClose:
      if (!fds_[op.fd].valid()) return {EBADF, -1};
      return Sys(::close(fds_[op.fd].release()));
    case Kind::kWrite: {
      Target t(*this, op, O_RDWR | O_CREAT);
      if (t.err() != 0) return {t.err(), -1};
      size_t done = 0;
      int err = 0;
      while (done < data.size()) {
        ssize_t n = ::pwrite(t.fd(), data.data() + done, data.size() - done, static_cast<off_t>(op.offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) err = errno;
        if (n <= 0) break;
        done += static_cast<size_t>(n);
      }
      return t.Finish(err, static_cast<int64_t>(done));
    }
    case Kind::kTruncate: {
      if (op.fd < 0) return Sys(::truncate(Abs(op.path).c_str(), static_cast<off_t>(op.length)));
      Target t(*this, op, 0);
      if (t.err() != 0) return {t.err(), -1};
      return Sys(::ftruncate(t.fd(), static_cast<off_t>(op.length)));
    }
    case Kind::kFallocate: {
      Target t(*this, op, O_RDWR);
      if (t.err() != 0) return {t.err(), -1};
      int r = ::fallocate(t.fd(), op.flags, static_cast<off_t>(op.offset), static_cast<off_t>(op.length));
      return t.Finish(r < 0 ? errno : 0, 0);
    }
    case Kind::kMmap: {
      Target t(*this, op, O_RDWR);
      if (t.err() != 0) return {t.err(), -1};
      struct stat st {};
      if (::fstat(t.fd(), &st) != 0) return t.Finish(errno, 0);
      uint64_t size = static_cast<uint64_t>(st.st_size);
      if (op.offset >= size || op.length == 0) return t.Finish(0, 0);
      // Stores past the end of the file would fault (SIGBUS): clip to its size.
      uint64_t end = std::min(size, op.offset + op.length);
      uint64_t base = op.offset & ~static_cast<uint64_t>(::sysconf(_SC_PAGESIZE) - 1);
      void* p = ::mmap(nullptr, end - base, PROT_READ | PROT_WRITE, MAP_SHARED, t.fd(), static_cast<off_t>(base));
      if (p == MAP_FAILED) return t.Finish(errno, 0);
      std::memcpy(static_cast<char*>(p) + (op.offset - base), data.data(), end - op.offset);
      int err = 0;
      if ((op.flags & kMmapSync) && ::msync(p, end - base, MS_SYNC) != 0) err = errno;
      ::munmap(p, end - base);
      return t.Finish(err, static_cast<int64_t>(end - op.offset));
    }
    case Kind::kRename:
      if (op.flags != 0) {
        return Sys(::renameat2(AT_FDCWD, Abs(op.path).c_str(), AT_FDCWD, Abs(op.path2).c_str(),
                               static_cast<unsigned>(op.flags)));
      }
      return Sys(::rename(Abs(op.path).c_str(), Abs(op.path2).c_str()));
    case Kind::kLink: return Sys(::link(Abs(op.path).c_str(), Abs(op.path2).c_str()));
    case Kind::kSymlink: return Sys(::symlink(op.path2.c_str(), Abs(op.path).c_str()));
    case Kind::kUnlink: return Sys(::unlink(Abs(op.path).c_str()));
    case Kind::kMkdir: return Sys(::mkdir(Abs(op.path).c_str(), static_cast<mode_t>(op.flags)));
    case Kind::kRmdir: return Sys(::rmdir(Abs(op.path).c_str()));
    case Kind::kChmod: return Sys(::chmod(Abs(op.path).c_str(), static_cast<mode_t>(op.flags)));
    case Kind::kFsync: {
      Target t(*this, op, O_RDONLY);
      if (t.err() != 0) return {t.err(), -1};
      return t.Finish(::fsync(t.fd()) != 0 ? errno : 0, 0);
    }
    case Kind::kSnapshot:
    case Kind::kSnapshotDelete:
    case Kind::kSnapshotRestore:
    case Kind::kCheckSnapshot:
    case Kind::kCheck:
    case Kind::kRemount:
    case Kind::kTrim: break;  // whole-volume operations: the runner's
  }
  return {};
}

std::array<int, kSlots> Side::CloseAll() {
  std::array<int, kSlots> errs{};
  for (int i = 0; i < kSlots; ++i) {
    if (fds_[i].valid() && ::close(fds_[i].release()) != 0) errs[i] = errno;
  }
  return errs;
}

// The bytes a write or mmap stores. A copy reads the reference, so that
// QCFS is handed content it already holds (at the same alignment when the
// generator chose so), which exercises dedup.
std::string MakeData(const Op& op, const Side& ref) {
  switch (op.data) {
    case DataKind::kRandom: return RandomBytes(op.length, op.seed);
    case DataKind::kText: return RandomBytes(op.length, op.seed, true);
    case DataKind::kZero: return std::string(op.length, '\0');
    case DataKind::kCopy: {
      std::string out(op.length, '\0');
      UniqueFd fd(::open(ref.Abs(op.src).c_str(), O_RDONLY | O_CLOEXEC));
      if (fd.valid()) {
        ssize_t n = ::pread(fd.get(), out.data(), out.size(), static_cast<off_t>(op.src_offset));
        (void)n;  // short or failed: the rest stays zero
      }
      return out;
    }
  }
  return {};
}

// ---------------------------------------------------------------- digests and comparison

// What a path or descriptor looks like: enough to compare QCFS with the
// reference, and to keep for a snapshot without copying its content.
struct Node {
  char type = '-';  // f file, d directory, l symlink, o other, - absent (err says why)
  int err = 0;
  mode_t perm = 0;
  nlink_t nlink = 0;
  uint64_t size = 0;
  std::vector<uint64_t> blocks;  // file: a hash of each 4 KiB block
  std::string listing;           // directory: "name/type" lines, sorted; symlink: its content
};
using Tree = std::map<std::string, Node>;  // relative path ("" the root) to node

int ReadBlocks(int fd, uint64_t size, std::vector<uint64_t>* blocks) {
  std::string buf(1 << 20, '\0');
  for (uint64_t off = 0; off < size;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(off));
    if (n < 0) return errno;
    if (n == 0) {  // shorter than its size says: digest the missing bytes as a marker
      blocks->push_back(0xdeadull);
      return 0;
    }
    for (size_t at = 0; at < static_cast<size_t>(n); at += kBlock) {
      std::string_view block = std::string_view(buf).substr(at, std::min<size_t>(kBlock, static_cast<size_t>(n) - at));
      blocks->push_back(std::hash<std::string_view>{}(block));
    }
    off += static_cast<uint64_t>(n);
  }
  return 0;
}

void FillStat(const struct stat& st, Node* node) {
  node->type = S_ISREG(st.st_mode) ? 'f' : S_ISDIR(st.st_mode) ? 'd' : S_ISLNK(st.st_mode) ? 'l' : 'o';
  node->perm = st.st_mode & 07777;
  node->nlink = st.st_nlink;
  node->size = S_ISREG(st.st_mode) || S_ISLNK(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
}

Node DigestFd(int fd) {
  Node node;
  struct stat st {};
  if (fd < 0) {
    node.err = EBADF;
    return node;
  }
  if (::fstat(fd, &st) != 0) {
    node.err = errno;
    return node;
  }
  FillStat(st, &node);
  if (node.type == 'f') node.err = ReadBlocks(fd, node.size, &node.blocks);
  return node;
}

// Adds `rel` under `root` (and with `recursive` everything below it) to *tree.
void DigestPath(const std::string& root, const std::string& rel, bool recursive, Tree* tree) {
  std::string abs = rel.empty() ? root : root + "/" + rel;
  Node& node = (*tree)[rel];
  struct stat st {};
  if (::lstat(abs.c_str(), &st) != 0) {
    node.err = errno;
    return;
  }
  FillStat(st, &node);
  if (node.type == 'f') {
    UniqueFd fd(::open(abs.c_str(), O_RDONLY | O_CLOEXEC));
    node.err = fd.valid() ? ReadBlocks(fd.get(), node.size, &node.blocks) : errno;
  } else if (node.type == 'l') {
    char buf[4096];
    ssize_t n = ::readlink(abs.c_str(), buf, sizeof buf);
    node.listing = n < 0 ? "?" : std::string(buf, static_cast<size_t>(n));
  } else if (node.type == 'd') {
    DIR* d = ::opendir(abs.c_str());
    if (d == nullptr) {
      node.err = errno;
      return;
    }
    std::vector<std::pair<std::string, char>> entries;
    while (dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      char type = e->d_type == DT_REG ? 'f' : e->d_type == DT_DIR ? 'd' : e->d_type == DT_LNK ? 'l' : '?';
      entries.emplace_back(name, type);
    }
    ::closedir(d);
    std::sort(entries.begin(), entries.end());
    for (const auto& [name, type] : entries) node.listing += name + "/" + type + "\n";
    if (recursive) {
      for (const auto& [name, type] : entries) DigestPath(root, rel.empty() ? name : rel + "/" + name, true, tree);
    }
  }
}

Tree DigestTree(const std::string& root) {
  Tree tree;
  DigestPath(root, "", true, &tree);
  return tree;
}

// A difference between the reference and QCFS. `kind` names what differed
// (shrinking keeps a smaller sequence only while the kind stays the same).
struct Diff {
  std::string kind;
  std::string message;
  uint64_t block = 0;  // content: the first differing block
};

std::string Listing(const std::string& l) {
  std::string s = l;
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s.empty() ? "(empty)" : s;
}

// `attrs` false compares a root: its listing only (the reference's root is a
// temp dir whose mode and links are its own).
std::optional<Diff> CompareNodes(const Node& ref, const Node& q, bool attrs = true) {
  auto diff = [](std::string kind, std::string message) { return Diff{std::move(kind), std::move(message)}; };
  if (ref.type != q.type) {
    auto what = [](const Node& n) {
      return n.type == '-' ? std::string("absent (") + strerrorname_np(n.err) + ")" : std::string(1, n.type);
    };
    return diff("type", "type: ext4 " + what(ref) + ", qcfs " + what(q));
  }
  if (ref.type == '-') return std::nullopt;
  if (ref.err != q.err) {
    return diff("read error", std::string("reading: ext4 ") + strerrorname_np(ref.err) + ", qcfs " +
                                  strerrorname_np(q.err));
  }
  if (attrs && ref.perm != q.perm) return diff("mode", "mode: ext4 " + Octal(ref.perm) + ", qcfs " + Octal(q.perm));
  if (attrs && ref.nlink != q.nlink) {
    return diff("nlink", "nlink: ext4 " + std::to_string(ref.nlink) + ", qcfs " + std::to_string(q.nlink));
  }
  if (ref.size != q.size) {
    return diff("size", "size: ext4 " + std::to_string(ref.size) + ", qcfs " + std::to_string(q.size));
  }
  if (ref.listing != q.listing) {
    return diff(ref.type == 'd' ? "listing" : "symlink",
                "entries: ext4 " + Listing(ref.listing) + "| qcfs " + Listing(q.listing));
  }
  if (ref.blocks != q.blocks) {
    size_t n = std::min(ref.blocks.size(), q.blocks.size());
    size_t first = 0;
    while (first < n && ref.blocks[first] == q.blocks[first]) ++first;
    size_t last = first, count = 0;
    for (size_t i = first; i < n; ++i) {
      if (ref.blocks[i] != q.blocks[i]) last = i, ++count;
    }
    Diff d = diff("content", "content differs in " + std::to_string(count) + " of " + std::to_string(n) +
                                 " 4 KiB blocks, the first at offset " + std::to_string(first * kBlock) +
                                 ", the last at " + std::to_string(last * kBlock));
    d.block = first;
    return d;
  }
  return std::nullopt;
}

std::string Hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (unsigned char c : bytes) s += std::string{digits[c >> 4], digits[c & 15]};
  return s;
}

// The first differing byte of a block both descriptors hold, for the report.
std::string ByteDetail(int ref_fd, int q_fd, uint64_t block) {
  std::string a(kBlock, '\0'), b(kBlock, '\0');
  ssize_t na = ::pread(ref_fd, a.data(), a.size(), static_cast<off_t>(block * kBlock));
  ssize_t nb = ::pread(q_fd, b.data(), b.size(), static_cast<off_t>(block * kBlock));
  if (na < 0 || nb < 0) return "";
  a.resize(static_cast<size_t>(na));
  b.resize(static_cast<size_t>(nb));
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  size_t zeros = 0;
  for (size_t j = i; j < b.size() && b[j] == '\0'; ++j) ++zeros;
  return "; at byte " + std::to_string(block * kBlock + i) + " ext4 has " + Hex(std::string_view(a).substr(i, 8)) +
         "..., qcfs " + Hex(std::string_view(b).substr(i, 8)) + "..." +
         (zeros == b.size() - i && zeros > 0 ? " (qcfs zeros to the end of the block)" : "");
}

std::string ByteDetail(const std::string& ref_path, const std::string& q_path, uint64_t block) {
  UniqueFd a(::open(ref_path.c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd b(::open(q_path.c_str(), O_RDONLY | O_CLOEXEC));
  return a.valid() && b.valid() ? ByteDetail(a.get(), b.get(), block) : "";
}

// ---------------------------------------------------------------- running a sequence

struct VolumeArgs {
  std::string mkfs;   // extra `qcfs mkfs` arguments
  std::string mount;  // extra `qcfs mount` arguments
};

struct Failure {
  size_t index = 0;  // the operation after which it showed; the sequence's length: the final check
  std::string kind;  // what differed, e.g. "content" or "result of rename"
  std::string message;
};

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  uint64_t n = 0;
  return v != nullptr && ParseU64(v, &n) ? n : fallback;
}

// Kills the daemon when one operation runs longer than the limit, so that a
// hang in QCFS fails the test (the blocked calls then return ENOTCONN)
// instead of blocking it forever.
class Watchdog {
 public:
  Watchdog(std::chrono::seconds limit, std::function<void()> on_hang)
      : limit_(limit), on_hang_(std::move(on_hang)), thread_([this] { Loop(); }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Arm() {
    std::lock_guard lock(mu_);
    deadline_ = std::chrono::steady_clock::now() + limit_;
    armed_ = true;
  }
  void Disarm() {
    std::lock_guard lock(mu_);
    armed_ = false;
  }
  bool fired() const { return fired_; }

 private:
  void Loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::seconds(1));
      if (armed_ && std::chrono::steady_clock::now() > deadline_) {
        armed_ = false;
        fired_ = true;
        on_hang_();
      }
    }
  }

  const std::chrono::seconds limit_;
  const std::function<void()> on_hang_;
  std::mutex mu_;  // guards stop_, armed_, deadline_
  std::condition_variable cv_;
  bool stop_ = false;
  bool armed_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::atomic<bool> fired_{false};
  std::thread thread_;  // last: starts once the members above exist
};

MountedVolume::Options VolumeOptions(const VolumeArgs& args) {
  MountedVolume::Options o;
  o.size = 4ull << 30;  // sparse; room for the files, their snapshots and the metadata
  o.mkfs_args = args.mkfs;
  o.mount_args = args.mount;
  return o;
}

// One fresh QCFS volume and one fresh reference directory, driven in
// lockstep one operation at a time.
class Runner {
 public:
  explicit Runner(const VolumeArgs& args)
      : volume_(VolumeOptions(args)),
        ref_(MakeRefRoot(ref_dir_)),
        qcfs_(volume_.mnt()),
        watchdog_(std::chrono::seconds(EnvU64("QCFS_DIFF_HANG_SECONDS", 120)), [this] {
          pid_t pid = volume_.DaemonPid();
          if (pid > 0) ::kill(pid, SIGKILL);
        }) {}
  ~Runner() {
    ref_.CloseAll();
    qcfs_.CloseAll();
  }

  const Side& ref() const { return ref_; }
  // Per kind: operations that succeeded and that failed (alike on both sides).
  const std::map<Kind, std::pair<uint64_t, uint64_t>>& tally() const { return tally_; }

  // Applies `op` to both sides and compares what it touched.
  std::optional<Failure> Step(const Op& op, size_t index) {
    watchdog_.Arm();
    std::optional<Diff> d = Apply(op);
    watchdog_.Disarm();
    if (watchdog_.fired()) d = Diff{"hang", "hang: no answer within the limit; the daemon was killed"};
    if (!d) return std::nullopt;
    return Failure{index, d->kind, d->message};
  }

  // The whole tree, the descriptors held and every snapshot; then, unmounted,
  // `qcfs check --full`.
  std::optional<Failure> Finish(size_t index) {
    watchdog_.Arm();
    std::optional<Diff> d = CheckAll(true);
    watchdog_.Disarm();
    if (!d) {
      ref_.CloseAll();
      qcfs_.CloseAll();
      auto u = volume_.Unmount();
      if (u.exit_code != 0) d = Diff{"unmount", "qcfs umount failed: " + u.output};
    }
    if (!d) {
      auto c = volume_.Qcfs("check --full " + volume_.image());
      if (c.exit_code != 0) d = Diff{"qcfs check", "qcfs check --full after the sequence: " + c.output};
    }
    if (!d) return std::nullopt;
    return Failure{index, d->kind, d->message};
  }

  // After a failure: what QCFS cannot read now, and what `qcfs check
  // --full` finds in the unmounted volume (damage on the device, or a
  // transient error).
  std::string Autopsy() {
    std::string out;
    Tree tree = DigestTree(qcfs_.root());
    for (const auto& [path, node] : tree) {
      if (node.err != 0) out += "  now: " + path + ": " + strerrorname_np(node.err) + "\n";
    }
    if (out.empty()) out = "  now: every file of the tree reads without error\n";
    ref_.CloseAll();
    qcfs_.CloseAll();
    if (volume_.mounted() && volume_.Unmount().exit_code != 0) return out + "  qcfs umount failed\n";
    auto c = volume_.Qcfs("check --full " + volume_.image());
    std::istringstream lines(c.output);
    std::string line;
    for (int n = 0; n < 30 && std::getline(lines, line); ++n) out += "  check: " + line + "\n";
    return out + "  qcfs check --full: exit " + std::to_string(c.exit_code) + "\n";
  }

 private:
  static std::string MakeRefRoot(const TempDir& dir) {
    std::string root = dir.Join("ref");
    ::mkdir(root.c_str(), 0755);
    return root;
  }

  std::optional<Diff> Apply(const Op& op) {
    if (op.kind >= Kind::kSnapshot) tally_[op.kind].first++;
    switch (op.kind) {
      case Kind::kSnapshot: return Snapshot(op.name);
      case Kind::kSnapshotDelete: return SnapshotDelete(op.name);
      case Kind::kSnapshotRestore: return SnapshotRestore(op.name);
      case Kind::kCheckSnapshot: return CheckSnapshot(op.name);
      case Kind::kCheck: return CheckAll(false);
      case Kind::kRemount: return Remount();
      case Kind::kTrim: return Trim();
      default: break;
    }
    std::string data;
    if (op.kind == Kind::kWrite || op.kind == Kind::kMmap) data = MakeData(op, ref_);
    Outcome r = ref_.Apply(op, data);
    Outcome q = qcfs_.Apply(op, data);
    (r.err == 0 ? tally_[op.kind].first : tally_[op.kind].second)++;
    if (op.kind == Kind::kOpen && r.err == 0) slot_paths_[op.fd] = op.path;
    if (!SameOutcome(op, r, q)) {
      return Diff{"result of " + std::string(KindName(op.kind)),
                  "result: ext4 " + Describe(r) + ", qcfs " + Describe(q)};
    }
    return CompareTouched(op);
  }

  static bool SameOutcome(const Op& op, const Outcome& r, const Outcome& q) {
    if (r.err == q.err) return r.value == q.value;
    // POSIX allows either for a directory that is not empty.
    auto not_empty = [](int e) { return e == ENOTEMPTY || e == EEXIST; };
    return (op.kind == Kind::kRename || op.kind == Kind::kRmdir) && not_empty(r.err) && not_empty(q.err);
  }

  static std::string Parent(const std::string& rel) {
    size_t slash = rel.rfind('/');
    return slash == std::string::npos ? "" : rel.substr(0, slash);
  }

  std::optional<Diff> CompareTouched(const Op& op) {
    std::vector<std::pair<std::string, bool>> paths;  // path, recursively
    std::vector<int> slots;
    auto file = [&](const std::string& p) {
      if (!p.empty()) paths.emplace_back(p, false);
    };
    switch (op.kind) {
      case Kind::kOpen:
        file(op.path);
        paths.emplace_back(Parent(op.path), false);
        slots.push_back(op.fd);
        break;
      case Kind::kClose: file(slot_paths_[op.fd]); break;
      case Kind::kRename:
      case Kind::kLink:
        paths.emplace_back(op.path, true);
        paths.emplace_back(op.path2, true);
        paths.emplace_back(Parent(op.path), false);
        paths.emplace_back(Parent(op.path2), false);
        break;
      case Kind::kSymlink:
      case Kind::kUnlink:
      case Kind::kMkdir:
      case Kind::kRmdir:
        file(op.path);
        paths.emplace_back(Parent(op.path), false);
        break;
      default:  // write, truncate, fallocate, mmap, chmod, fsync
        if (op.fd >= 0) {
          slots.push_back(op.fd);
          file(slot_paths_[op.fd]);
        } else {
          file(op.path);
          paths.emplace_back(Parent(op.path), false);
        }
        break;
    }
    for (int slot : slots) {
      if (auto d = CompareSlot(slot)) return d;
    }
    for (const auto& [p, recursive] : paths) {
      Tree r, q;
      DigestPath(ref_.root(), p, recursive, &r);
      DigestPath(qcfs_.root(), p, recursive, &q);
      if (auto d = CompareTrees(r, q, ref_.root(), qcfs_.root())) return d;
    }
    return std::nullopt;
  }

  std::optional<Diff> CompareSlot(int slot) {
    Node r = DigestFd(ref_.fd(slot)), q = DigestFd(qcfs_.fd(slot));
    auto d = CompareNodes(r, q);
    if (!d) return std::nullopt;
    d->message = "fd " + std::to_string(slot) + " (opened as " + slot_paths_[slot] + "): " + d->message;
    if (d->kind == "content") d->message += ByteDetail(ref_.fd(slot), qcfs_.fd(slot), d->block);
    return d;
  }

  // `ref_root`/`q_root`: where the trees live, for byte detail.
  static std::optional<Diff> CompareTrees(const Tree& r, const Tree& q, const std::string& ref_root,
                                          const std::string& q_root) {
    static const Node kAbsent{.type = '-', .err = ENOENT};
    auto walk_r = r.begin();
    auto walk_q = q.begin();
    while (walk_r != r.end() || walk_q != q.end()) {
      std::string path;
      if (walk_q == q.end() || (walk_r != r.end() && walk_r->first <= walk_q->first)) {
        path = walk_r->first;
      } else {
        path = walk_q->first;
      }
      const Node& a = walk_r != r.end() && walk_r->first == path ? (walk_r++)->second : kAbsent;
      const Node& b = walk_q != q.end() && walk_q->first == path ? (walk_q++)->second : kAbsent;
      auto d = CompareNodes(a, b, !path.empty());
      if (!d) continue;
      d->message = (path.empty() ? "/" : path) + ": " + d->message;
      if (d->kind == "content") {
        d->message += ByteDetail(ref_root + "/" + path, q_root + "/" + path, d->block);
      }
      return d;
    }
    return std::nullopt;
  }

  std::optional<Diff> CheckAll(bool snapshots) {
    if (auto d = CompareTrees(DigestTree(ref_.root()), DigestTree(qcfs_.root()), ref_.root(), qcfs_.root())) {
      return d;
    }
    for (int slot = 0; slot < kSlots; ++slot) {
      if (auto d = CompareSlot(slot)) return d;
    }
    if (snapshots) {
      for (const std::string& name : snapshots_) {
        if (auto d = CheckSnapshot(name)) return d;
      }
    }
    return std::nullopt;
  }

  std::string SnapshotCopy(const std::string& name) const { return ref_dir_.Join("snapshots/" + name); }

  // The reference's side of a snapshot: a copy of its tree (cp -a keeps
  // hard links, modes and symlinks).
  std::optional<Diff> CopyReference(const std::string& name) {
    ::mkdir(ref_dir_.Join("snapshots").c_str(), 0755);
    auto c = testing::Shell("cp -a " + ref_.root() + " " + SnapshotCopy(name));
    if (c.exit_code != 0) return Diff{"reference", "copying the reference tree failed: " + c.output};
    snapshots_.insert(name);
    return std::nullopt;
  }

  std::optional<Diff> Snapshot(const std::string& name) {
    auto r = volume_.Qcfs("snapshot create " + volume_.mnt() + " " + name);
    if (r.exit_code != 0) return Diff{"snapshot create", "qcfs snapshot create failed: " + r.output};
    return CopyReference(name);
  }

  std::optional<Diff> SnapshotDelete(const std::string& name) {
    if (!snapshots_.count(name)) return std::nullopt;  // its creation was shrunk away
    auto r = volume_.Qcfs("snapshot delete " + volume_.mnt() + " " + name);
    if (r.exit_code != 0) return Diff{"snapshot delete", "qcfs snapshot delete failed: " + r.output};
    snapshots_.erase(name);
    std::error_code ec;
    std::filesystem::remove_all(SnapshotCopy(name), ec);
    struct stat st {};
    if (::lstat(volume_.Path(".snapshots/" + name).c_str(), &st) == 0) {
      return Diff{"snapshot delete", ".snapshots/" + name + " is still there after its deletion"};
    }
    return std::nullopt;
  }

  // Restore has no ext4 counterpart for open files (QCFS gives them the
  // restored content or ESTALE), so every descriptor is closed first.
  std::optional<Diff> SnapshotRestore(const std::string& name) {
    if (!snapshots_.count(name)) return std::nullopt;
    if (auto d = CloseAll("restore")) return d;
    std::set<std::string> before = SnapshotNames();
    auto r = volume_.Qcfs("snapshot restore " + volume_.mnt() + " " + name);
    if (r.exit_code != 0) return Diff{"snapshot restore", "qcfs snapshot restore failed: " + r.output};
    std::vector<std::string> added;
    for (const std::string& n : SnapshotNames()) {
      if (!before.count(n)) added.push_back(n);
    }
    if (added.size() != 1) {
      return Diff{"snapshot restore", "expected one automatic snapshot of the tree before the restore, found " +
                                          std::to_string(added.size())};
    }
    if (auto d = CopyReference(added[0])) return d;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(ref_.root())) std::filesystem::remove_all(e.path(), ec);
    auto c = testing::Shell("cp -a " + SnapshotCopy(name) + "/. " + ref_.root());
    if (c.exit_code != 0) return Diff{"reference", "restoring the reference tree failed: " + c.output};
    return CheckAll(false);
  }

  std::set<std::string> SnapshotNames() const {
    std::set<std::string> names;
    DIR* d = ::opendir(volume_.Path(".snapshots").c_str());
    if (d == nullptr) return names;
    while (dirent* e = ::readdir(d)) names.insert(e->d_name);
    ::closedir(d);
    names.erase(".");
    names.erase("..");
    return names;
  }

  std::optional<Diff> CheckSnapshot(const std::string& name) {
    if (!snapshots_.count(name)) return std::nullopt;
    std::string copy = SnapshotCopy(name), view = volume_.Path(".snapshots/" + name);
    auto d = CompareTrees(DigestTree(copy), DigestTree(view), copy, view);
    if (!d) return std::nullopt;
    d->kind = "snapshot " + d->kind;
    d->message = "snapshot " + name + ", " + d->message;
    return d;
  }

  // The cleaner rewrites where chunks live, not what files hold.
  std::optional<Diff> Trim() {
    auto r = volume_.Qcfs("trim " + volume_.mnt());
    if (r.exit_code != 0) return Diff{"trim", "qcfs trim failed: " + r.output};
    return CheckAll(false);
  }

  std::optional<Diff> CloseAll(const std::string& why) {
    std::array<int, kSlots> r = ref_.CloseAll(), q = qcfs_.CloseAll();
    for (int i = 0; i < kSlots; ++i) {
      if (r[i] != q[i]) {
        return Diff{"result of close", "closing fd " + std::to_string(i) + " before the " + why + ": ext4 " +
                                           Describe({r[i], 0}) + ", qcfs " + Describe({q[i], 0})};
      }
    }
    return std::nullopt;
  }

  std::optional<Diff> Remount() {
    if (auto d = CloseAll("remount")) return d;
    auto u = volume_.Unmount();
    if (u.exit_code != 0) return Diff{"unmount", "qcfs umount failed: " + u.output};
    auto m = volume_.Mount();
    if (m.exit_code != 0) return Diff{"mount", "qcfs mount failed: " + m.output};
    return CheckAll(false);
  }

  MountedVolume volume_;
  TempDir ref_dir_;
  Side ref_;
  Side qcfs_;
  std::array<std::string, kSlots> slot_paths_;  // what each slot was opened as
  std::set<std::string> snapshots_;             // those the reference holds a copy of
  std::map<Kind, std::pair<uint64_t, uint64_t>> tally_;
  Watchdog watchdog_;                           // last: it may call into volume_ until it is gone
};

// A recorded sequence and the volume it runs on.
struct Sequence {
  VolumeArgs args;
  std::vector<Op> ops;
};

std::optional<Failure> RunSequence(const Sequence& seq, uint64_t* ops_run = nullptr) {
  Runner runner(seq.args);
  for (size_t i = 0; i < seq.ops.size(); ++i) {
    if (ops_run != nullptr) ++*ops_run;
    if (auto f = runner.Step(seq.ops[i], i)) return f;
  }
  return runner.Finish(seq.ops.size());
}

std::string FormatSequence(const Sequence& seq, const std::string& comment) {
  std::string s;
  std::istringstream lines(comment);  // every line of a multi-line message stays a comment
  for (std::string line; std::getline(lines, line);) s += "# " + line + "\n";
  s += "mkfs " + seq.args.mkfs + "\n";
  s += "mount " + seq.args.mount + "\n";
  for (const Op& op : seq.ops) s += Format(op) + "\n";
  return s;
}

std::optional<Sequence> ParseSequence(const std::string& text, std::string* error) {
  Sequence seq;
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] == '#') continue;
    if (line.starts_with("mkfs")) {
      seq.args.mkfs = line.size() > 5 ? line.substr(5) : "";
    } else if (line.starts_with("mount")) {
      seq.args.mount = line.size() > 6 ? line.substr(6) : "";
    } else if (auto op = Parse(line, error)) {
      seq.ops.push_back(*op);
    } else {
      *error = "line " + std::to_string(n) + ": " + *error;
      return std::nullopt;
    }
  }
  return seq;
}

// ---------------------------------------------------------------- shrinking

using RunFn = std::function<std::optional<Failure>(const std::vector<Op>&)>;

// Delta debugging (ddmin): drops chunks of operations, halving the chunk
// size when none can go, while `run` still reports a failure of the same
// kind; what follows the failing operation is cut at once. Stops when no
// single operation can go or the time is spent.
std::vector<Op> Shrink(std::vector<Op> ops, const Failure& failure, const RunFn& run, std::chrono::seconds budget,
                       int* runs) {
  auto deadline = std::chrono::steady_clock::now() + budget;
  if (failure.index < ops.size()) ops.resize(failure.index + 1);
  size_t chunk = std::max<size_t>(1, ops.size() / 2);
  while (std::chrono::steady_clock::now() < deadline) {
    bool removed = false;
    for (size_t start = 0; start < ops.size() && std::chrono::steady_clock::now() < deadline;) {
      std::vector<Op> candidate(ops.begin(), ops.begin() + static_cast<ptrdiff_t>(start));
      candidate.insert(candidate.end(), ops.begin() + static_cast<ptrdiff_t>(std::min(ops.size(), start + chunk)),
                       ops.end());
      ++*runs;
      std::optional<Failure> f = run(candidate);
      if (f && f->kind == failure.kind) {
        if (f->index < candidate.size()) candidate.resize(f->index + 1);
        ops = std::move(candidate);
        removed = true;
      } else {
        start += chunk;
      }
    }
    if (chunk == 1 && !removed) break;
    if (!removed) chunk /= 2;
    chunk = std::max<size_t>(1, std::min(chunk, ops.size() / 2));
  }
  return ops;
}

// ---------------------------------------------------------------- the generator

struct RefEntry {
  std::string path;
  char type;
  uint64_t size;
};

void ListRef(const std::string& root, const std::string& rel, std::vector<RefEntry>* out) {
  DIR* d = ::opendir((rel.empty() ? root : root + "/" + rel).c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());  // readdir's order is not reproducible
  for (const std::string& name : names) {
    std::string p = rel.empty() ? name : rel + "/" + name;
    struct stat st {};
    if (::lstat((root + "/" + p).c_str(), &st) != 0) continue;
    char type = S_ISREG(st.st_mode) ? 'f' : S_ISDIR(st.st_mode) ? 'd' : 'l';
    out->push_back({p, type, static_cast<uint64_t>(st.st_size)});
    if (type == 'd') ListRef(root, p, out);
  }
}

// Random operations, chosen from what the reference holds now so that most
// of them do something (and some deliberately fail: missing parents,
// directories where files are expected, names taken).
class Generator {
 public:
  // `without`: operation names (and "append") never to generate.
  explicit Generator(uint64_t seed, std::string without = "") : rng_(seed), without_("," + without + ",") {}

  // The volume this seed runs on (chunk size, codec and buffering vary) and
  // the mix of operations it favours.
  VolumeArgs Setup() {
    static const char* kChunks[] = {"4K", "16K", "64K", "64K", "256K", "1M"};
    static const char* kCodecs[] = {"lz4", "zstd:1", "none"};
    static const char* kMounts[] = {"", "", "-o cache_size=16M", "-o flush_interval=1",
                                    "-o cache_size=16M,flush_interval=1"};
    VolumeArgs args;
    args.mkfs = std::string("--chunk-size ") + Pick(kChunks) + " --compression " + Pick(kCodecs);
    args.mount = Pick(kMounts);
    profile_ = static_cast<Profile>(Uniform(0, 4));
    return args;
  }

  std::string_view profile() const {
    static constexpr std::string_view kNames[] = {"balanced", "snapshots", "namespace", "data", "descriptors"};
    return kNames[static_cast<int>(profile_)];
  }

  Op Next(const Side& ref, size_t index) {
    Scan(ref);
    Op op;
    if (index % 100 == 99) {
      op.kind = Kind::kCheck;
      return op;
    }
    size_t max_snapshots = profile_ == Profile::kSnapshots ? 10 : 6;
    std::vector<std::pair<Kind, double>> weights = {
        {Kind::kWrite, 300},
        {Kind::kTruncate, 60},
        {Kind::kFallocate, 80},
        {Kind::kMmap, 50},
        {Kind::kRename, 60},
        {Kind::kLink, 25},
        {Kind::kSymlink, 8},
        {Kind::kUnlink, 50},
        {Kind::kMkdir, dirs_.size() < 12 ? 30.0 : 2.0},
        {Kind::kRmdir, 25},
        {Kind::kChmod, 15},
        {Kind::kFsync, 40},
        {Kind::kOpen, 60},
        {Kind::kClose, 45},
        {Kind::kSnapshot, snapshots_.size() < max_snapshots ? 5.0 : 0.0},
        {Kind::kSnapshotDelete, snapshots_.size() > 2 ? 2.0 : 0.0},
        {Kind::kSnapshotRestore, snapshots_.empty() ? 0.0 : 1.0},
        {Kind::kCheckSnapshot, snapshots_.empty() ? 0.0 : 4.0},
        {Kind::kRemount, 3},
        {Kind::kTrim, 3},
    };
    for (auto& [kind, weight] : weights) {
      weight *= Without(KindName(kind)) ? 0.0 : Factor(kind);
    }
    std::discrete_distribution<size_t> pick(weights.size(), 0, 1, [&, i = size_t{0}](double) mutable {
      return weights[i++].second;
    });
    Kind choice = weights[pick(rng_)].first;
    switch (choice) {
      case Kind::kWrite:
        op.kind = Kind::kWrite;
        PickTarget(ref, &op, true);
        PickRange(&op, TargetSize(ref, op), 4ull << 20);
        PickData(&op);
        break;
      case Kind::kTruncate: {
        op.kind = Kind::kTruncate;
        PickTarget(ref, &op, false);
        uint64_t size = TargetSize(ref, op);
        int how = Uniform(0, 9);
        if (how < 4) {
          op.length = size == 0 ? 0 : Uniform<uint64_t>(0, size - 1);
        } else if (how < 7) {
          op.length = size + Uniform<uint64_t>(1, 1 << 20);
        } else if (how < 8) {
          op.length = 0;
        } else {
          op.length = Uniform<uint64_t>(1, 256) * 4096 + Uniform<uint64_t>(0, 2) - 1;  // around a block boundary
        }
        op.length = std::min(op.length, kMaxEnd);
        break;
      }
      case Kind::kFallocate:
        op.kind = Kind::kFallocate;
        PickTarget(ref, &op, false);
        PickRange(&op, TargetSize(ref, op), 2ull << 20);
        op.flags = kFallocModes[Uniform<size_t>(0, std::size(kFallocModes) - 1)].first;
        break;
      case Kind::kMmap:
        op.kind = Kind::kMmap;
        PickTarget(ref, &op, false);
        PickRange(&op, TargetSize(ref, op), 1ull << 20);
        PickData(&op);
        if (Chance(0.5)) op.flags = kMmapSync;
        break;
      case Kind::kRename:
      case Kind::kLink:
        op.kind = choice;
        op.path = Chance(0.9) && !all_.empty() ? AnyOf(all_) : RandomPath(false);
        op.path2 = Chance(choice == Kind::kRename ? 0.5 : 0.15) && !all_.empty() ? AnyOf(all_) : RandomPath(Chance(0.3));
        if (op.kind == Kind::kRename && Chance(0.1)) op.flags = Chance(0.5) ? RENAME_NOREPLACE : RENAME_EXCHANGE;
        break;
      case Kind::kSymlink:
        op.kind = Kind::kSymlink;
        op.path = RandomPath(false);
        op.path2 = Chance(0.5) && !all_.empty() ? AnyOf(all_) : "dangling";
        break;
      case Kind::kUnlink:
        op.kind = Kind::kUnlink;
        op.path = Chance(0.85) && !files_.empty() ? AnyOf(files_) : RandomPath(false);
        break;
      case Kind::kMkdir:
        op.kind = Kind::kMkdir;
        op.path = RandomPath(Chance(0.9));
        op.flags = Chance(0.8) ? 0755 : 0700;
        break;
      case Kind::kRmdir:
        op.kind = Kind::kRmdir;
        if (!empty_dirs_.empty() && Chance(0.6)) {
          op.path = AnyOf(empty_dirs_);
        } else {
          op.path = Chance(0.8) && dirs_.size() > 1 ? AnyOf(dirs_) : RandomPath(true);
          if (op.path.empty()) op.path = RandomPath(true);
        }
        break;
      case Kind::kChmod: {
        static const int kModes[] = {0644, 0600, 0755, 0400, 0444, 0700, 04755, 02755};
        op.kind = Kind::kChmod;
        op.path = !all_.empty() ? AnyOf(all_) : RandomPath(false);
        op.flags = Pick(kModes);
        break;
      }
      case Kind::kFsync:
        op.kind = Kind::kFsync;
        if (Chance(0.2) && dirs_.size() > 1) {
          op.path = AnyOf(dirs_);
          if (op.path.empty()) op.path = dirs_.back();
        } else {
          PickTarget(ref, &op, false);
        }
        break;
      case Kind::kOpen:
        op.kind = Kind::kOpen;
        op.fd = Uniform(0, kSlots - 1);
        op.path = Chance(0.75) && !files_.empty() ? AnyOf(files_) : RandomPath(false);
        if (Chance(0.1)) op.flags |= kOpenTrunc;
        if (Chance(0.1) && !Without("append")) op.flags |= kOpenAppend;
        break;
      case Kind::kClose:
        op.kind = Kind::kClose;
        op.fd = open_slots_.empty() ? Uniform(0, kSlots - 1) : AnyOf(open_slots_);
        break;
      case Kind::kSnapshot:
        op.kind = Kind::kSnapshot;
        op.name = "s" + std::to_string(next_snapshot_++);
        snapshots_.push_back(op.name);
        break;
      case Kind::kSnapshotDelete: {
        op.kind = Kind::kSnapshotDelete;
        size_t i = Uniform<size_t>(0, snapshots_.size() - 1);
        op.name = snapshots_[i];
        snapshots_.erase(snapshots_.begin() + static_cast<ptrdiff_t>(i));
        break;
      }
      case Kind::kCheckSnapshot:
        op.kind = Kind::kCheckSnapshot;
        op.name = AnyOf(snapshots_);
        break;
      case Kind::kSnapshotRestore:
        op.kind = Kind::kSnapshotRestore;
        op.name = AnyOf(snapshots_);
        break;
      case Kind::kRemount:
      case Kind::kTrim:
      case Kind::kCheck: op.kind = choice; break;
    }
    return op;
  }

 private:
  template <typename T = int>
  T Uniform(T lo, T hi) {
    return std::uniform_int_distribution<T>(lo, hi)(rng_);
  }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }

  // How much the seed's profile favours an operation.
  double Factor(Kind kind) const {
    switch (profile_) {
      case Profile::kBalanced: return 1;
      case Profile::kSnapshots:
        return kind == Kind::kSnapshot || kind == Kind::kSnapshotDelete ? 8
               : kind == Kind::kSnapshotRestore                        ? 6
               : kind == Kind::kCheckSnapshot                          ? 3
                                                                       : 1;
      case Profile::kNamespace:
        return kind >= Kind::kRename && kind <= Kind::kChmod ? 4 : kind == Kind::kWrite ? 0.5 : 1;
      case Profile::kData:
        return kind >= Kind::kWrite && kind <= Kind::kMmap ? 2 : kind >= Kind::kRename && kind <= Kind::kRmdir ? 0.3 : 1;
      case Profile::kDescriptors:
        return kind == Kind::kOpen || kind == Kind::kClose ? 3 : kind == Kind::kUnlink || kind == Kind::kRename ? 2 : 1;
    }
    return 1;
  }
  bool Without(std::string_view name) const { return without_.find("," + std::string(name) + ",") != std::string::npos; }
  template <typename C>
  typename C::value_type AnyOf(const C& c) {
    return c[Uniform<size_t>(0, c.size() - 1)];
  }
  template <typename T, size_t N>
  T Pick(const T (&a)[N]) {
    return a[Uniform<size_t>(0, N - 1)];
  }

  void Scan(const Side& ref) {
    entries_.clear();
    ListRef(ref.root(), "", &entries_);
    files_.clear();
    dirs_ = {""};
    all_.clear();
    empty_dirs_.clear();
    for (size_t i = 0; i < entries_.size(); ++i) {
      const RefEntry& e = entries_[i];
      all_.push_back(e.path);
      if (e.type == 'f') files_.push_back(e.path);
      if (e.type == 'd') dirs_.push_back(e.path);
      // Listed depth first: a directory is empty when the next entry is not below it.
      if (e.type == 'd' && (i + 1 == entries_.size() || !entries_[i + 1].path.starts_with(e.path + "/"))) {
        empty_dirs_.push_back(e.path);
      }
    }
    open_slots_.clear();
    for (int i = 0; i < kSlots; ++i) {
      if (ref.fd(i) >= 0) open_slots_.push_back(i);
    }
  }

  // A name in an existing directory, mostly; sometimes below a missing
  // directory or a file. File names and directory names come from small
  // pools so that operations keep meeting each other's names.
  std::string RandomPath(bool dir) {
    static const char* kFileNames[] = {"f0", "f1", "f2", "f3", "f4", "f5"};
    static const char* kDirNames[] = {"d0", "d1", "d2"};
    std::string parent;
    if (Chance(0.93)) {
      parent = AnyOf(dirs_);
    } else if (Chance(0.5) && !files_.empty()) {
      parent = AnyOf(files_);  // ENOTDIR
    } else {
      parent = "missing";  // ENOENT
    }
    std::string name = (dir != Chance(0.1)) ? Pick(kDirNames) : Pick(kFileNames);
    return parent.empty() ? name : parent + "/" + name;
  }

  // A held descriptor, an existing file, or any path.
  void PickTarget(const Side& ref, Op* op, bool creating) {
    (void)ref;
    if (!open_slots_.empty() && Chance(0.4)) {
      op->fd = AnyOf(open_slots_);
    } else if (!files_.empty() && Chance(creating && files_.size() < 20 ? 0.7 : 0.9)) {
      op->path = AnyOf(files_);
    } else {
      op->path = RandomPath(false);
    }
  }

  uint64_t TargetSize(const Side& ref, const Op& op) {
    struct stat st {};
    int r = op.fd >= 0 ? ::fstat(ref.fd(op.fd), &st) : ::stat(ref.Abs(op.path).c_str(), &st);
    return r == 0 && S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
  }

  // Offsets inside the file, at its end, a little or far past it (holes),
  // and on chunk boundaries; lengths from one byte to `max_len`.
  void PickRange(Op* op, uint64_t size, uint64_t max_len) {
    int where = Uniform(0, 9);
    if (where < 4) {
      op->offset = size == 0 ? 0 : Uniform<uint64_t>(0, size - 1);
    } else if (where < 6) {
      op->offset = size;
    } else if (where < 8) {
      op->offset = size + Uniform<uint64_t>(1, 256 << 10);
    } else if (where < 9) {
      op->offset = Uniform<uint64_t>(0, kMaxEnd - 1);
    } else {
      op->offset = Uniform<uint64_t>(0, 128) * (64 << 10);
    }
    int len = Uniform(0, 9);
    if (len < 4) {
      op->length = Uniform<uint64_t>(1, 512);
    } else if (len < 7) {
      op->length = Uniform<uint64_t>(513, 64 << 10);
    } else if (len < 9) {
      op->length = Uniform<uint64_t>((64 << 10) + 1, std::min<uint64_t>(512 << 10, max_len));
    } else {
      op->length = Uniform<uint64_t>(1, max_len);
    }
    if (Chance(0.15)) op->length = std::max<uint64_t>(1, op->length / 4096) * 4096;
    op->offset = std::min(op->offset, kMaxEnd - 1);
    op->length = std::min(op->length, kMaxEnd - op->offset);
  }

  // Random, text, zeros, a random pattern from a small pool (the same
  // bytes again at another place), or a copy of another file's bytes.
  void PickData(Op* op) {
    int kind = Uniform(0, 19);
    if (kind < 7) {
      op->data = DataKind::kRandom;
      op->seed = rng_() >> 1;
    } else if (kind < 10) {
      op->data = DataKind::kRandom;
      op->seed = Uniform(0, 3);
    } else if (kind < 15) {
      op->data = DataKind::kText;
      op->seed = rng_() >> 1;
    } else if (kind < 16 || files_.empty()) {
      op->data = DataKind::kZero;
    } else {
      const RefEntry* src = nullptr;
      for (int tries = 0; tries < 8 && src == nullptr; ++tries) {
        const RefEntry& e = entries_[Uniform<size_t>(0, entries_.size() - 1)];
        if (e.type == 'f') src = &e;
      }
      if (src == nullptr) {
        op->data = DataKind::kZero;
        return;
      }
      op->data = DataKind::kCopy;
      op->src = src->path;
      op->src_offset = src->size == 0 ? 0 : Uniform<uint64_t>(0, src->size - 1);
      if (Chance(0.6)) {  // same place, whole chunks: the chunks QCFS holds
        op->src_offset &= ~((64ull << 10) - 1);
        op->offset = op->src_offset;
        op->length = std::min<uint64_t>(std::max<uint64_t>(op->length, 64 << 10) & ~((64ull << 10) - 1),
                                        kMaxEnd - op->offset);
        if (op->length == 0) op->length = 1;
      }
    }
  }

  enum class Profile { kBalanced, kSnapshots, kNamespace, kData, kDescriptors };

  std::mt19937_64 rng_;
  const std::string without_;  // ",name,name,"
  Profile profile_ = Profile::kBalanced;
  std::vector<RefEntry> entries_;
  std::vector<std::string> files_, dirs_, empty_dirs_, all_;
  std::vector<int> open_slots_;
  std::vector<std::string> snapshots_;  // live ones
  int next_snapshot_ = 0;
};

// ---------------------------------------------------------------- the tests

// `autopsy`: Runner::Autopsy of the failing run.
std::string ReportFailure(const Sequence& seq, const Failure& failure, const std::string& origin,
                          const std::string& autopsy) {
  std::string report = origin + ": after operation " + std::to_string(failure.index) + " of " +
                       std::to_string(seq.ops.size()) + " (" +
                       (failure.index < seq.ops.size() ? Format(seq.ops[failure.index]) : "the final check") +
                       "): " + failure.message + "\nright after it:\n" + autopsy;
  uint64_t seconds = EnvU64("QCFS_DIFF_SHRINK_SECONDS", 300);
  Sequence minimal = seq;
  Failure last = failure;
  if (seconds > 0) {
    int runs = 0;
    auto start = std::chrono::steady_clock::now();
    minimal.ops = Shrink(
        seq.ops, failure,
        [&](const std::vector<Op>& ops) {
          std::optional<Failure> f = RunSequence(Sequence{seq.args, ops});
          if (f && f->kind == failure.kind) last = *f;
          return f;
        },
        std::chrono::seconds(seconds), &runs);
    report += "shrunk from " + std::to_string(std::min(seq.ops.size(), failure.index + 1)) + " to " +
              std::to_string(minimal.ops.size()) + " operations in " + std::to_string(runs) + " runs (" +
              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start)
                                 .count()) +
              " s); it fails with: " + last.message + "\n";
  } else if (failure.index < minimal.ops.size()) {
    minimal.ops.resize(failure.index + 1);
  }
  std::string text = FormatSequence(minimal, origin + ": " + last.message);
  const char* tmp = std::getenv("TMPDIR");
  std::string file = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") + "/qcfs-diff-" +
                     std::to_string(::getpid()) + "-" + std::to_string(std::hash<std::string>{}(origin) % 100000) +
                     ".ops";
  std::ofstream(file) << text;
  report += "replay with QCFS_DIFF_REPLAY=" + file + ":\n" + text;
  return report;
}

TEST(Differential, RandomOpsMatchExt4) {
  if (const char* replay = std::getenv("QCFS_DIFF_REPLAY"); replay != nullptr && *replay) {
    std::string text = testing::ReadFile(replay), error;
    std::optional<Sequence> seq = ParseSequence(text, &error);
    ASSERT_TRUE(seq) << replay << ": " << error;
    uint64_t ran = 0;
    std::optional<Failure> f;
    std::string autopsy;
    {
      Runner runner(seq->args);
      for (size_t i = 0; i < seq->ops.size() && !f; ++i, ++ran) f = runner.Step(seq->ops[i], i);
      if (!f) f = runner.Finish(seq->ops.size());
      if (f) autopsy = runner.Autopsy();
    }
    if (f) ADD_FAILURE() << ReportFailure(*seq, *f, std::string("replay of ") + replay, autopsy);
    std::printf("%llu replayed ops compared\n", static_cast<unsigned long long>(ran));
    return;
  }
  uint64_t first = EnvU64("QCFS_DIFF_SEED", 1);
  uint64_t seeds = EnvU64("QCFS_DIFF_SEEDS", 3);
  uint64_t count = EnvU64("QCFS_DIFF_OPS", 1500);
  const char* without = std::getenv("QCFS_DIFF_WITHOUT");
  uint64_t compared = 0;
  std::map<Kind, std::pair<uint64_t, uint64_t>> tally;
  for (uint64_t seed = first; seed < first + seeds; ++seed) {
    Generator gen(seed, without != nullptr ? without : "");
    Sequence seq;
    seq.args = gen.Setup();
    std::optional<Failure> failure;
    std::string autopsy;
    {
      Runner runner(seq.args);
      for (size_t i = 0; i < count && !failure; ++i) {
        seq.ops.push_back(gen.Next(runner.ref(), i));
        ++compared;
        failure = runner.Step(seq.ops.back(), i);
      }
      if (!failure) failure = runner.Finish(seq.ops.size());
      if (failure) autopsy = runner.Autopsy();
      for (const auto& [kind, counts] : runner.tally()) {
        tally[kind].first += counts.first;
        tally[kind].second += counts.second;
      }
    }
    std::printf("seed %llu (mkfs %s, mount %s, %s): %zu ops, %s\n", static_cast<unsigned long long>(seed),
                seq.args.mkfs.c_str(), seq.args.mount.c_str(), std::string(gen.profile()).c_str(), seq.ops.size(),
                failure ? "DIFFERS" : "same");
    std::fflush(stdout);
    if (failure) {
      ADD_FAILURE() << ReportFailure(seq, *failure,
                                     "QCFS_DIFF_SEED=" + std::to_string(seed) + " QCFS_DIFF_OPS=" + std::to_string(count),
                                     autopsy);
    }
  }
  std::string kinds;
  for (const auto& [kind, counts] : tally) {
    kinds += " " + std::string(KindName(kind)) + " " + std::to_string(counts.first) + "/" +
             std::to_string(counts.first + counts.second);
  }
  std::printf("succeeded/run by kind:%s\n", kinds.c_str());
  std::printf("%llu random ops compared\n", static_cast<unsigned long long>(compared));
  ::testing::Test::RecordProperty("random_ops_compared", std::to_string(compared));
}

// The printed form reads back as the same operations.
TEST(Differential, SequencesPrintAndParseBack) {
  Generator gen(7);
  TempDir dir;
  Side ref(dir.path());
  Sequence seq;
  seq.args = gen.Setup();
  for (size_t i = 0; i < 500; ++i) {
    Op op = gen.Next(ref, i);
    if (op.kind == Kind::kMkdir) ref.Apply(op, "");  // so that later paths go deeper
    seq.ops.push_back(op);
  }
  std::string text = FormatSequence(seq, "round trip"), error;
  std::optional<Sequence> back = ParseSequence(text, &error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(back->args.mkfs, seq.args.mkfs);
  EXPECT_EQ(back->args.mount, seq.args.mount);
  ASSERT_EQ(back->ops.size(), seq.ops.size());
  for (size_t i = 0; i < seq.ops.size(); ++i) EXPECT_EQ(Format(back->ops[i]), Format(seq.ops[i]));
  EXPECT_FALSE(ParseSequence("write path=f0 off=x\n", &error));
  EXPECT_FALSE(ParseSequence("explode path=f0\n", &error));
}

// The shrinker finds the few operations a failure needs among many.
TEST(Differential, ShrinkingKeepsOnlyTheOperationsTheFailureNeeds) {
  std::vector<Op> ops(600);
  for (size_t i = 0; i < ops.size(); ++i) ops[i].offset = i;
  // Fails once 17, 230 and 411 have all run, at the last of them.
  RunFn run = [](const std::vector<Op>& seq) -> std::optional<Failure> {
    bool a = false, b = false;
    for (size_t i = 0; i < seq.size(); ++i) {
      a |= seq[i].offset == 17;
      b |= seq[i].offset == 230;
      if (a && b && seq[i].offset == 411) return Failure{i, "content", ""};
    }
    return std::nullopt;
  };
  auto first = run(ops);
  ASSERT_TRUE(first);
  int runs = 0;
  std::vector<Op> minimal = Shrink(ops, *first, run, std::chrono::seconds(60), &runs);
  ASSERT_EQ(minimal.size(), 3u);
  EXPECT_EQ(minimal[0].offset, 17u);
  EXPECT_EQ(minimal[1].offset, 230u);
  EXPECT_EQ(minimal[2].offset, 411u);
  EXPECT_LT(runs, 200);
}

}  // namespace
}  // namespace qcfs
