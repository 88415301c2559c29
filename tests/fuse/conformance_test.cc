// POSIX conformance through a mounted QCFS volume: the semantics pjdfstest
// checks (chmod, chown, link, mkdir, mkfifo, mknod, open, rename, rmdir,
// symlink, truncate, unlink, utimensat, extended attributes), with exact
// error codes, the permission rules for unprivileged users, and the times
// each call must update. The reference is Linux on ext4: where QCFS answers
// differently, QCFS is wrong.
//
// Every check is counted. The binary ends by printing "conformance cases
// passed/total: P/T", and each test records its own count as the property
// `conformance_checks` (in --gtest_output=xml).
//
// Layout: one test per system call (or per rule that spans several), each
// working in a fresh directory that is also the working directory, so that
// the same relative paths serve root (this process) and the unprivileged
// side: forked children that drop to other uids and gids and report errno
// back through a pipe. The volume is mounted with allow_other; the kernel
// applies the mode bits (default_permissions).
//
// The last test remounts the volume and compares every object the tests
// made, so that what was checked is what QCFS stored, not only what the
// kernel cached.
//
// QCFS_CONFORMANCE_DIR=/some/dir runs the same cases in a fresh directory
// below that path instead, to validate the expectations on a local file
// system such as ext4 or tmpfs (every case passes there); the cases that
// need QCFS itself (a read-only mount, snapshots, a remount) are skipped.
// Runs as root: it mounts, and its children switch users.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <source_location>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/testutil/mounted_volume.h"

namespace qcfs {
namespace {

using testing::MountedVolume;

// ---------------------------------------------------------------- counting

struct Tally {
  int total = 0;
  int passed = 0;
};

Tally& Totals() {
  static Tally tally;
  return tally;
}

std::string ErrName(int err) {
  if (err == 0) return "success";
  if (err == -1) return "no answer (the child died)";
  if (const char* name = strerrorname_np(err); name != nullptr) return name;
  return "errno " + std::to_string(err);
}

std::string Oct(unsigned long v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0%lo", v);
  return buf;
}

// Paths in messages: a long name is shown by its length.
std::string Show(const std::string& path) {
  if (path.size() <= 64) return path;
  return path.substr(0, 16) + "...(" + std::to_string(path.size()) + " bytes)";
}

// Records one check; a failure names what was checked and how it differed,
// at the line of the test that asked for the check.
bool Check(bool ok, const std::string& what, const std::string& detail,
           std::source_location where = std::source_location::current()) {
  ++Totals().total;
  if (ok) {
    ++Totals().passed;
  } else {
    ADD_FAILURE_AT(where.file_name(), static_cast<int>(where.line())) << what << ": " << detail;
  }
  return ok;
}

bool ExpectErrno(const std::string& what, int expected, int actual,
                 std::source_location where = std::source_location::current()) {
  return Check(expected == actual, what, "expected " + ErrName(expected) + ", got " + ErrName(actual), where);
}

bool ExpectValue(const std::string& what, long long expected, long long actual,
                 std::source_location where = std::source_location::current()) {
  return Check(expected == actual, what, "expected " + std::to_string(expected) + ", got " + std::to_string(actual),
               where);
}

bool ExpectMode(const std::string& what, mode_t expected, mode_t actual,
                std::source_location where = std::source_location::current()) {
  return Check(expected == actual, what, "expected " + Oct(expected) + ", got " + Oct(actual), where);
}

bool ExpectString(const std::string& what, const std::string& expected, const std::string& actual,
                  std::source_location where = std::source_location::current()) {
  return Check(expected == actual, what, "expected \"" + Show(expected) + "\", got \"" + Show(actual) + "\"", where);
}

int64_t Ns(const timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; }

std::string ShowTime(const timespec& t) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld.%09ld", static_cast<long long>(t.tv_sec), t.tv_nsec);
  return buf;
}

bool ExpectNewer(const std::string& what, const timespec& before, const timespec& after,
                 std::source_location where = std::source_location::current()) {
  return Check(Ns(after) > Ns(before), what + " must advance", "was " + ShowTime(before) + ", now " + ShowTime(after),
               where);
}

bool ExpectSameTime(const std::string& what, const timespec& before, const timespec& after,
                    std::source_location where = std::source_location::current()) {
  return Check(Ns(after) == Ns(before), what + " must not change",
               "was " + ShowTime(before) + ", now " + ShowTime(after), where);
}

bool ExpectTime(const std::string& what, const timespec& expected, const timespec& actual,
                std::source_location where = std::source_location::current()) {
  return Check(Ns(expected) == Ns(actual), what, "expected " + ShowTime(expected) + ", got " + ShowTime(actual), where);
}

// Waits until the coarse clock (which the kernel may stamp with) has passed
// the fine clock (which QCFS stamps with) as read now: whatever happens next
// gets a later time than anything stamped before.
void Tick() {
  timespec start{}, now{};
  ::clock_gettime(CLOCK_REALTIME, &start);
  do {
    ::usleep(500);
    ::clock_gettime(CLOCK_REALTIME_COARSE, &now);
  } while (Ns(now) <= Ns(start));
}

// ---------------------------------------------------------------- calls

// One system call to check: what it is (for messages) and how to make it,
// returning 0 or the errno it failed with. It runs in this process (as
// root) or in a child with other credentials.
struct Op {
  std::string what;
  std::function<int()> run;
};

int Res(long rc) { return rc < 0 ? errno : 0; }

int FdRes(int fd) {
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

std::string OpenFlags(int flags) {
  std::string s;
  switch (flags & O_ACCMODE) {
    case O_RDONLY: s = "O_RDONLY"; break;
    case O_WRONLY: s = "O_WRONLY"; break;
    default: s = "O_RDWR"; break;
  }
  static const std::pair<int, const char*> kBits[] = {
      {O_CREAT, "O_CREAT"},       {O_EXCL, "O_EXCL"},           {O_TRUNC, "O_TRUNC"},       {O_APPEND, "O_APPEND"},
      {O_NOFOLLOW, "O_NOFOLLOW"}, {O_DIRECTORY, "O_DIRECTORY"}, {O_NONBLOCK, "O_NONBLOCK"}, {O_PATH, "O_PATH"}};
  for (const auto& [bit, name] : kBits) {
    if ((flags & bit) == bit) s += std::string("|") + name;
  }
  return s;
}

std::string Id(unsigned id) { return id == static_cast<unsigned>(-1) ? "-1" : std::to_string(id); }

std::string ShowTimes(const timespec* times) {
  if (times == nullptr) return "NULL";
  auto one = [](const timespec& t) -> std::string {
    if (t.tv_nsec == UTIME_NOW) return "UTIME_NOW";
    if (t.tv_nsec == UTIME_OMIT) return "UTIME_OMIT";
    return "{" + std::to_string(t.tv_sec) + ", " + std::to_string(t.tv_nsec) + "}";
  };
  return "[" + one(times[0]) + ", " + one(times[1]) + "]";
}

Op Open(std::string p, int flags, mode_t mode = 0644) {
  std::string what = "open(" + Show(p) + ", " + OpenFlags(flags) + ((flags & O_CREAT) ? ", " + Oct(mode) : "") + ")";
  return {what, [=] { return FdRes(::open(p.c_str(), flags, mode)); }};
}
Op Opendir(std::string p) {
  return {"opendir(" + Show(p) + ")", [=] { return FdRes(::open(p.c_str(), O_RDONLY | O_DIRECTORY)); }};
}
Op Mkdir(std::string p, mode_t mode = 0755) {
  return {"mkdir(" + Show(p) + ", " + Oct(mode) + ")", [=] { return Res(::mkdir(p.c_str(), mode)); }};
}
Op Mkfifo(std::string p, mode_t mode = 0644) {
  return {"mkfifo(" + Show(p) + ", " + Oct(mode) + ")", [=] { return Res(::mkfifo(p.c_str(), mode)); }};
}
Op Mknod(std::string p, mode_t mode, dev_t dev = 0) {
  return {"mknod(" + Show(p) + ", " + Oct(mode) + ", " + std::to_string(major(dev)) + ":" + std::to_string(minor(dev)) +
              ")",
          [=] { return Res(::mknod(p.c_str(), mode, dev)); }};
}
Op Symlink(std::string target, std::string p) {
  return {"symlink(" + Show(target) + ", " + Show(p) + ")", [=] { return Res(::symlink(target.c_str(), p.c_str())); }};
}
Op Link(std::string from, std::string to, int flags = 0) {
  return {std::string(flags ? "linkat(AT_SYMLINK_FOLLOW, " : "link(") + Show(from) + ", " + Show(to) + ")",
          [=] { return Res(::linkat(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags)); }};
}
Op Rename(std::string from, std::string to, unsigned flags = 0) {
  std::string name = "rename(";
  if (flags == RENAME_NOREPLACE)
    name = "renameat2(RENAME_NOREPLACE, ";
  else if (flags == RENAME_EXCHANGE)
    name = "renameat2(RENAME_EXCHANGE, ";
  else if (flags != 0)
    name = "renameat2(" + std::to_string(flags) + ", ";
  return {name + Show(from) + ", " + Show(to) + ")",
          [=] { return Res(::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags)); }};
}
Op Unlink(std::string p) {
  return {"unlink(" + Show(p) + ")", [=] { return Res(::unlink(p.c_str())); }};
}
Op Rmdir(std::string p) {
  return {"rmdir(" + Show(p) + ")", [=] { return Res(::rmdir(p.c_str())); }};
}
Op Chmod(std::string p, mode_t mode) {
  return {"chmod(" + Show(p) + ", " + Oct(mode) + ")", [=] { return Res(::chmod(p.c_str(), mode)); }};
}
Op Chown(std::string p, uid_t uid, gid_t gid) {
  return {"chown(" + Show(p) + ", " + Id(uid) + ", " + Id(gid) + ")",
          [=] { return Res(::chown(p.c_str(), uid, gid)); }};
}
Op Lchown(std::string p, uid_t uid, gid_t gid) {
  return {"lchown(" + Show(p) + ", " + Id(uid) + ", " + Id(gid) + ")",
          [=] { return Res(::lchown(p.c_str(), uid, gid)); }};
}
Op Truncate(std::string p, off_t len) {
  return {"truncate(" + Show(p) + ", " + std::to_string(len) + ")", [=] { return Res(::truncate(p.c_str(), len)); }};
}
Op Utimens(std::string p, std::optional<std::pair<timespec, timespec>> times, int flags = 0) {
  timespec ts[2] = {};
  if (times) ts[0] = times->first, ts[1] = times->second;
  std::string what = std::string(flags ? "utimensat(AT_SYMLINK_NOFOLLOW, " : "utimensat(") + Show(p) + ", " +
                     ShowTimes(times ? ts : nullptr) + ")";
  return {what, [=] {
            timespec t[2] = {ts[0], ts[1]};
            return Res(::utimensat(AT_FDCWD, p.c_str(), times ? t : nullptr, flags));
          }};
}
Op Stat(std::string p) {
  return {"stat(" + Show(p) + ")", [=] {
            struct stat st {};
            return Res(::stat(p.c_str(), &st));
          }};
}
Op Lstat(std::string p) {
  return {"lstat(" + Show(p) + ")", [=] {
            struct stat st {};
            return Res(::lstat(p.c_str(), &st));
          }};
}
Op Access(std::string p, int mode) {
  std::string m = mode == F_OK ? "F_OK" : "";
  if (mode & R_OK) m += "R";
  if (mode & W_OK) m += "W";
  if (mode & X_OK) m += "X";
  if (mode != F_OK) m += "_OK";
  return {"access(" + Show(p) + ", " + m + ")", [=] { return Res(::access(p.c_str(), mode)); }};
}
Op Readlink(std::string p) {
  return {"readlink(" + Show(p) + ")", [=] {
            char buf[8192];
            return Res(::readlink(p.c_str(), buf, sizeof buf));
          }};
}
std::string XattrFlags(int flags) {
  if (flags == XATTR_CREATE) return ", XATTR_CREATE";
  if (flags == XATTR_REPLACE) return ", XATTR_REPLACE";
  return flags == 0 ? "" : ", " + std::to_string(flags);
}
Op Setxattr(std::string p, std::string name, std::string value, int flags = 0) {
  return {"setxattr(" + Show(p) + ", " + Show(name) + ", " + std::to_string(value.size()) + " bytes" +
              XattrFlags(flags) + ")",
          [=] { return Res(::setxattr(p.c_str(), name.c_str(), value.data(), value.size(), flags)); }};
}
Op Lsetxattr(std::string p, std::string name, std::string value, int flags = 0) {
  return {"lsetxattr(" + Show(p) + ", " + Show(name) + ", " + std::to_string(value.size()) + " bytes" +
              XattrFlags(flags) + ")",
          [=] { return Res(::lsetxattr(p.c_str(), name.c_str(), value.data(), value.size(), flags)); }};
}
Op Getxattr(std::string p, std::string name, size_t size = 65536) {
  return {"getxattr(" + Show(p) + ", " + Show(name) + ", size " + std::to_string(size) + ")", [=] {
            std::string buf(std::max<size_t>(size, 1), '\0');
            return Res(::getxattr(p.c_str(), name.c_str(), size ? buf.data() : nullptr, size));
          }};
}
Op Lgetxattr(std::string p, std::string name) {
  return {"lgetxattr(" + Show(p) + ", " + Show(name) + ")", [=] {
            std::string buf(65536, '\0');
            return Res(::lgetxattr(p.c_str(), name.c_str(), buf.data(), buf.size()));
          }};
}
Op Listxattr(std::string p, size_t size = 65536) {
  return {"listxattr(" + Show(p) + ", size " + std::to_string(size) + ")", [=] {
            std::string buf(std::max<size_t>(size, 1), '\0');
            return Res(::listxattr(p.c_str(), size ? buf.data() : nullptr, size));
          }};
}
Op Removexattr(std::string p, std::string name) {
  return {"removexattr(" + Show(p) + ", " + Show(name) + ")",
          [=] { return Res(::removexattr(p.c_str(), name.c_str())); }};
}
// open(O_WRONLY) and write(): what the writer may do to set-id bits.
Op Write(std::string p, std::string data) {
  return {"write(" + Show(p) + ", " + std::to_string(data.size()) + " bytes)", [=] {
            int fd = ::open(p.c_str(), O_WRONLY);
            if (fd < 0) return errno;
            ssize_t n = ::write(fd, data.data(), data.size());
            int err = n < 0 ? errno : n == static_cast<ssize_t>(data.size()) ? 0 : EIO;
            ::close(fd);
            return err;
          }};
}

// Runs a call as root, in this process, and checks its result.
bool Expect(const Op& op, int expected, std::source_location where = std::source_location::current()) {
  return ExpectErrno(op.what, expected, op.run(), where);
}

// A call that prepares a case. Only its failure is counted (as a failed
// check), so setup does not inflate the total.
bool Must(const Op& op, std::source_location where = std::source_location::current()) {
  int err = op.run();
  if (err == 0) return true;
  return Check(false, "setup: " + op.what, "failed with " + ErrName(err), where);
}

// ---------------------------------------------------------------- users

// Credentials for the unprivileged side. kStaff is a group that only some
// of them belong to: carol through a supplementary group, dave as her
// primary group.
constexpr gid_t kStaff = 2000;

struct Cred {
  const char* name;
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;
};

const Cred kAlice{"alice", 1001, 1001, {}};
const Cred kBob{"bob", 1002, 1002, {}};
const Cred kCarol{"carol", 1003, 1003, {kStaff}};
const Cred kDave{"dave", 1004, kStaff, {}};
const Cred kNobody{"nobody", 65534, 65534, {}};

bool ReadFull(int fd, void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Runs `ops` in order in a forked child with `who`'s credentials (groups,
// then all three gids, then all three uids: no privilege is left) and
// returns what each returned; -1 marks a call the child never reported.
std::vector<int> RunAs(const Cred& who, const std::vector<Op>& ops) {
  std::vector<int> results;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return std::vector<int>(ops.size(), -1);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    int setup = 0;
    if (::setgroups(who.groups.size(), who.groups.data()) != 0 || ::setresgid(who.gid, who.gid, who.gid) != 0 ||
        ::setresuid(who.uid, who.uid, who.uid) != 0) {
      setup = errno;
    }
    for (const Op& op : ops) {
      int r = setup != 0 ? -1 : op.run();
      if (::write(fds[1], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) ::_exit(1);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  if (pid > 0) {
    int r;
    while (results.size() < ops.size() && ReadFull(fds[0], &r, sizeof r)) results.push_back(r);
    int status;
    ::waitpid(pid, &status, 0);
  }
  ::close(fds[0]);
  results.resize(ops.size(), -1);
  return results;
}

std::string As(const Cred& who) { return std::string("as ") + who.name + " (uid " + std::to_string(who.uid) + "): "; }

// Runs the calls in order as `who` and checks each result.
void ExpectAs(const Cred& who, const std::vector<std::pair<Op, int>>& cases,
              std::source_location where = std::source_location::current()) {
  std::vector<Op> ops;
  for (const auto& c : cases) ops.push_back(c.first);
  std::vector<int> got = RunAs(who, ops);
  for (size_t i = 0; i < cases.size(); ++i) {
    ExpectErrno(As(who) + cases[i].first.what, cases[i].second, got[i], where);
  }
}

void MustAs(const Cred& who, const std::vector<Op>& ops, std::source_location where = std::source_location::current()) {
  std::vector<int> got = RunAs(who, ops);
  for (size_t i = 0; i < ops.size(); ++i) {
    if (got[i] != 0) Check(false, "setup " + As(who) + ops[i].what, "failed with " + ErrName(got[i]), where);
  }
}

// ---------------------------------------------------------------- objects

enum class Kind { kRegular, kDirectory, kFifo, kCharDev, kBlockDev, kSocket, kSymlink };

struct KindInfo {
  Kind kind;
  const char* name;  // also the object's name in the cases
  mode_t type;
  unsigned char dtype;
};

constexpr KindInfo kKinds[] = {
    {Kind::kRegular, "regular", S_IFREG, DT_REG},   {Kind::kDirectory, "dir", S_IFDIR, DT_DIR},
    {Kind::kFifo, "fifo", S_IFIFO, DT_FIFO},        {Kind::kCharDev, "chardev", S_IFCHR, DT_CHR},
    {Kind::kBlockDev, "blockdev", S_IFBLK, DT_BLK}, {Kind::kSocket, "socket", S_IFSOCK, DT_SOCK},
    {Kind::kSymlink, "symlink", S_IFLNK, DT_LNK},
};

Op Create(Kind kind, const std::string& path) {
  switch (kind) {
    case Kind::kRegular: return Open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
    case Kind::kDirectory: return Mkdir(path, 0755);
    case Kind::kFifo: return Mkfifo(path, 0644);
    case Kind::kCharDev: return Mknod(path, S_IFCHR | 0644, makedev(1, 3));
    case Kind::kBlockDev: return Mknod(path, S_IFBLK | 0644, makedev(7, 0));
    case Kind::kSocket: return Mknod(path, S_IFSOCK | 0644, 0);
    case Kind::kSymlink: return Symlink("target", path);
  }
  return Open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
}

// Creates an object of `kind` at `path` with exactly `mode` (set by chmod
// after the creation, whatever the umask); symlinks point at "target".
// Without a mode: 0755 for a directory, 0644 for the rest.
void Make(Kind kind, const std::string& path, std::optional<mode_t> mode = std::nullopt,
          std::source_location where = std::source_location::current()) {
  Must(Create(kind, path), where);
  if (kind != Kind::kSymlink) Must(Chmod(path, mode.value_or(kind == Kind::kDirectory ? 0755 : 0644)), where);
}

// Creates `path` as a regular file holding `data`, with `mode`, owned by uid:gid.
void MakeFile(const std::string& path, const std::string& data, mode_t mode = 0644, uid_t uid = 0, gid_t gid = 0,
              std::source_location where = std::source_location::current()) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) {
    Check(false, "setup: create " + Show(path), ErrName(errno), where);
    return;
  }
  if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    Check(false, "setup: write " + Show(path), ErrName(errno), where);
  }
  ::close(fd);
  Must(Lchown(path, uid, gid), where);
  Must(Chmod(path, mode), where);
}

void Own(const std::string& path, uid_t uid, gid_t gid, std::source_location where = std::source_location::current()) {
  Must(Lchown(path, uid, gid), where);
}

struct stat L(const std::string& path, std::source_location where = std::source_location::current()) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    Check(false, "lstat(" + Show(path) + ")", "failed with " + ErrName(errno), where);
  }
  return st;
}

bool Exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string Contents(const std::string& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return "<" + ErrName(errno) + ">";
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

std::string ReadLink(const std::string& path) {
  char buf[8192];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n < 0 ? "<" + ErrName(errno) + ">" : std::string(buf, static_cast<size_t>(n));
}

std::string GetX(const std::string& path, const std::string& name) {
  std::string buf(65536, '\0');
  ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), buf.data(), buf.size());
  return n < 0 ? "<" + ErrName(errno) + ">" : buf.substr(0, static_cast<size_t>(n));
}

std::set<std::string> ListX(const std::string& path) {
  std::set<std::string> names;
  std::string buf(65536, '\0');
  ssize_t n = ::llistxattr(path.c_str(), buf.data(), buf.size());
  for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(buf.data() + i)) + 1) names.insert(buf.data() + i);
  return names;
}

// Names in a directory (without "." and ".."), with their d_type.
std::map<std::string, unsigned char> ReadDir(const std::string& path) {
  std::map<std::string, unsigned char> names;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names[name] = e->d_type;
  }
  ::closedir(d);
  return names;
}

const std::string kLong(256, 'l');  // one byte over NAME_MAX
const std::string kMax(255, 'm');   // exactly NAME_MAX

// ---------------------------------------------------------------- target

// Leaves the file system under test: nothing may keep it busy at unmount.
void LeaveDir() {
  if (::chdir("/") != 0) std::abort();
}

// Where the cases run. By default a QCFS volume mounted once for the
// binary, with allow_other so that unprivileged children reach it; with
// QCFS_CONFORMANCE_DIR, a fresh directory below that path.
class Target {
 public:
  static Target& Get() {
    if (!instance_) instance_.reset(new Target);
    return *instance_;
  }
  static void Close() { instance_.reset(); }
  // What the cases ran on, for the closing line.
  static std::string Name() {
    if (!instance_) return "";
    return instance_->volume_ ? "QCFS" : instance_->root_;
  }

  ~Target() {
    LeaveDir();
    std::error_code ec;
    if (!other_fs_.empty()) std::filesystem::remove_all(other_fs_, ec);
    if (volume_ == nullptr && !run_dir_.empty()) std::filesystem::remove_all(run_dir_, ec);
  }

  MountedVolume* volume() { return volume_.get(); }
  // The root of the file system under test (the mountpoint for QCFS).
  const std::string& root() const { return root_; }
  // The tests' directories go below this: root()/run_rel().
  const std::string& run_dir() const { return run_dir_; }
  const std::string& run_rel() const { return run_rel_; }
  // A directory on another file system, for EXDEV.
  const std::string& other_fs() const { return other_fs_; }

 private:
  Target() {
    if (::geteuid() != 0) throw std::runtime_error("the conformance suite runs as root (it mounts and switches users)");
    if (const char* dir = std::getenv("QCFS_CONFORMANCE_DIR"); dir != nullptr && *dir) {
      root_ = dir;
      run_rel_ = "qcfs-conformance-" + std::to_string(::getpid());
    } else {
      volume_ = std::make_unique<MountedVolume>(MountedVolume::Options{.mount_args = "-o allow_other"});
      root_ = volume_->mnt();
      run_rel_ = "conformance";
    }
    run_dir_ = root_ + "/" + run_rel_;
    if (::mkdir(run_dir_.c_str(), 0777) != 0 || ::chmod(run_dir_.c_str(), 0777) != 0) {
      throw std::runtime_error("cannot create " + run_dir_ + ": " + ErrName(errno));
    }
    struct stat here {};
    ::stat(run_dir_.c_str(), &here);
    std::vector<std::string> candidates = {"/dev/shm", "/tmp", "/run", "/var/tmp"};
    if (volume_) candidates.insert(candidates.begin(), volume_->dir().path());
    for (const std::string& c : candidates) {
      struct stat st {};
      if (::stat(c.c_str(), &st) != 0 || st.st_dev == here.st_dev) continue;
      std::string tmpl = c + "/qcfs-conformance-XXXXXX";
      if (::mkdtemp(tmpl.data()) == nullptr) continue;
      other_fs_ = tmpl;
      break;
    }
  }

  static inline std::unique_ptr<Target> instance_;
  std::unique_ptr<MountedVolume> volume_;
  std::string root_, run_rel_, run_dir_, other_fs_;
};

// A fresh directory for one test, made the working directory (children
// inherit it) with umask 022, and left again at the end.
class Scratch {
 public:
  explicit Scratch(const std::string& name) : start_(Totals().total) {
    static int serial = 0;
    Target& t = Target::Get();
    std::string leaf = name + "-" + std::to_string(++serial);
    rel_ = t.run_rel() + "/" + leaf;
    path_ = t.run_dir() + "/" + leaf;
    if (::mkdir(path_.c_str(), 0777) != 0 || ::chmod(path_.c_str(), 0777) != 0 || ::chdir(path_.c_str()) != 0) {
      throw std::runtime_error("cannot prepare " + path_ + ": " + ErrName(errno));
    }
    old_umask_ = ::umask(022);
  }
  ~Scratch() {
    ::umask(old_umask_);
    LeaveDir();
    ::testing::Test::RecordProperty("conformance_checks", Totals().total - start_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  const std::string& path() const { return path_; }
  // The path relative to the file system's root.
  const std::string& rel() const { return rel_; }

 private:
  int start_;
  std::string path_, rel_;
  mode_t old_umask_ = 022;
};

class ConformanceEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    std::string on = Target::Name();
    Target::Close();
    std::printf("conformance cases passed/total: %d/%d%s\n", Totals().passed, Totals().total,
                on.empty() ? "" : (" on " + on).c_str());
    std::fflush(stdout);
  }
};

[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new ConformanceEnvironment);

bool OnQcfs() { return Target::Get().volume() != nullptr; }

// ---------------------------------------------------------------- chmod

TEST(Conformance, Chmod) {
  Scratch s("chmod");
  for (const KindInfo& k : kKinds) {
    if (k.kind == Kind::kSymlink) continue;
    Make(k.kind, k.name);
    for (mode_t m : {00, 0111, 0222, 0444, 0644, 0755, 01777, 07777}) {
      if (!Expect(Chmod(k.name, m), 0)) continue;
      ExpectMode(Chmod(k.name, m).what + ": st_mode", k.type | m, L(k.name).st_mode);
    }
    struct stat before = L(k.name);
    Tick();
    Expect(Chmod(k.name, 0640), 0);
    struct stat after = L(k.name);
    ExpectNewer(Chmod(k.name, 0640).what + ": ctime", before.st_ctim, after.st_ctim);
    ExpectSameTime(Chmod(k.name, 0640).what + ": mtime", before.st_mtim, after.st_mtim);
  }

  // chmod follows a symlink; the link keeps 0777.
  Make(Kind::kRegular, "target");
  Must(Symlink("target", "link"));
  Expect(Chmod("link", 0600), 0);
  ExpectMode("chmod(link, 0600): the target's st_mode", S_IFREG | 0600, L("target").st_mode);
  ExpectMode("chmod(link, 0600): the link's st_mode", S_IFLNK | 0777, L("link").st_mode);
  {
    int fd = ::open("target", O_RDONLY);
    ExpectErrno("fchmod(target, 0604)", 0, fd < 0 ? errno : Res(::fchmod(fd, 0604)));
    if (fd >= 0) ::close(fd);
    ExpectMode("fchmod(target, 0604): st_mode", S_IFREG | 0604, L("target").st_mode);
  }

  // Errors of the path.
  Must(Symlink("loop", "loop"));
  Must(Symlink("missing", "dangling"));
  Expect(Chmod("missing", 0644), ENOENT);
  Expect(Chmod("dangling", 0644), ENOENT);
  Expect(Chmod("regular/x", 0644), ENOTDIR);
  Expect(Chmod(kLong, 0644), ENAMETOOLONG);
  Expect(Chmod("dir/" + kLong, 0644), ENAMETOOLONG);
  Expect(Chmod("loop", 0644), ELOOP);
  Expect(Chmod("loop/x", 0644), ELOOP);

  // Only the owner (or root) may chmod; a failed chmod changes nothing.
  Make(Kind::kRegular, "alice", 0644);
  Own("alice", kAlice.uid, kAlice.gid);
  Make(Kind::kDirectory, "alicedir", 0755);
  Own("alicedir", kAlice.uid, kStaff);
  Make(Kind::kRegular, "staff", 0644);
  Own("staff", kAlice.uid, kStaff);  // alice is not in staff
  Make(Kind::kRegular, "carol", 0644);
  Own("carol", kCarol.uid, kStaff);  // carol is, through a supplementary group
  Make(Kind::kRegular, "dave", 0644);
  Own("dave", kDave.uid, kStaff);  // dave is, as his primary group
  Make(Kind::kDirectory, "closed", 0700);
  Make(Kind::kRegular, "closed/f");
  Own("closed/f", kAlice.uid, kAlice.gid);
  struct stat before = L("alice");
  Tick();
  ExpectAs(kBob, {{Chmod("alice", 0777), EPERM}, {Chmod("alicedir", 0777), EPERM}});
  ExpectAs(kNobody, {{Chmod("alice", 0777), EPERM}});
  struct stat after = L("alice");
  ExpectMode("chmod by non-owners: st_mode", S_IFREG | 0644, after.st_mode);
  ExpectSameTime("chmod by non-owners (EPERM): ctime", before.st_ctim, after.st_ctim);
  ExpectAs(kAlice, {{Chmod("alice", 0600), 0}});
  ExpectMode(As(kAlice) + "chmod(alice, 0600): st_mode", S_IFREG | 0600, L("alice").st_mode);
  ExpectAs(kAlice, {{Chmod("alice", 04755), 0}});
  ExpectMode(As(kAlice) + "chmod(alice, 04755): st_mode", S_IFREG | 04755, L("alice").st_mode);
  ExpectAs(kAlice, {{Chmod("alice", 01644), 0}});
  ExpectMode(As(kAlice) + "chmod(alice, 01644): st_mode", S_IFREG | 01644, L("alice").st_mode);
  // S_ISGID on a file whose group the caller is not in is dropped silently.
  ExpectAs(kAlice, {{Chmod("staff", 02755), 0}});
  ExpectMode(As(kAlice) + "chmod(staff, 02755) outside the group: st_mode", S_IFREG | 0755, L("staff").st_mode);
  ExpectAs(kCarol, {{Chmod("carol", 02755), 0}});
  ExpectMode(As(kCarol) + "chmod(carol, 02755) in the group: st_mode", S_IFREG | 02755, L("carol").st_mode);
  ExpectAs(kDave, {{Chmod("dave", 02755), 0}});
  ExpectMode(As(kDave) + "chmod(dave, 02755) in the group: st_mode", S_IFREG | 02755, L("dave").st_mode);
  ExpectAs(kAlice, {{Chmod("alicedir", 02755), 0}});
  ExpectMode(As(kAlice) + "chmod(alicedir, 02755) outside the group: st_mode", S_IFDIR | 0755, L("alicedir").st_mode);
  // Search permission on the path.
  ExpectAs(kAlice, {{Chmod("closed/f", 0600), EACCES}});
  // Root may chmod anything.
  Expect(Chmod("alice", 0640), 0);
  ExpectMode("chmod(alice, 0640) by root: st_mode", S_IFREG | 0640, L("alice").st_mode);
}

// ---------------------------------------------------------------- chown

TEST(Conformance, Chown) {
  Scratch s("chown");
  for (const KindInfo& k : kKinds) {
    Make(k.kind, k.name);
    struct stat before = L(k.name);
    Tick();
    Op op = Lchown(k.name, 1234, 5678);
    Expect(op, 0);
    struct stat st = L(k.name);
    ExpectValue(op.what + ": st_uid", 1234, st.st_uid);
    ExpectValue(op.what + ": st_gid", 5678, st.st_gid);
    ExpectNewer(op.what + ": ctime", before.st_ctim, st.st_ctim);
    Op gid_only = Lchown(k.name, -1, 4321);
    Expect(gid_only, 0);
    st = L(k.name);
    ExpectValue(gid_only.what + ": st_uid", 1234, st.st_uid);
    ExpectValue(gid_only.what + ": st_gid", 4321, st.st_gid);
  }

  // chown follows a symlink, lchown does not.
  Make(Kind::kRegular, "target");
  Must(Symlink("target", "link"));
  Expect(Chown("link", 77, 88), 0);
  ExpectValue("chown(link, 77, 88): the target's st_uid", 77, L("target").st_uid);
  ExpectValue("chown(link, 77, 88): the target's st_gid", 88, L("target").st_gid);
  ExpectValue("chown(link, 77, 88): the link's st_uid", 0, L("link").st_uid);

  // chown clears set-user-ID, and set-group-ID with group execute, of a
  // regular file, even done by root; directories keep theirs.
  struct SetId {
    const char* name;
    Kind kind;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    mode_t expected;
  };
  const SetId kSetId[] = {
      {"suid", Kind::kRegular, 04755, 1001, 1001, 0755},
      {"sgid", Kind::kRegular, 02755, 1001, 1001, 0755},
      {"both", Kind::kRegular, 06755, 1001, 1001, 0755},
      {"sgid-nox", Kind::kRegular, 02745, 1001, 1001, 02745},
      {"same-ids", Kind::kRegular, 06755, static_cast<uid_t>(-1), static_cast<gid_t>(-1), 0755},
      {"setid-dir", Kind::kDirectory, 06755, 1001, 1001, 06755},
  };
  for (const SetId& c : kSetId) {
    Make(c.kind, c.name, c.mode);
    Op op = Chown(c.name, c.uid, c.gid);
    Expect(op, 0);
    ExpectMode(op.what + " of " + Oct(c.mode) + " by root: st_mode",
               (c.kind == Kind::kRegular ? S_IFREG : S_IFDIR) | c.expected, L(c.name).st_mode);
  }

  // Errors of the path.
  Must(Symlink("loop", "loop"));
  Expect(Chown("missing", 1, 1), ENOENT);
  Expect(Lchown("missing", 1, 1), ENOENT);
  Expect(Chown("target/x", 1, 1), ENOTDIR);
  Expect(Chown(kLong, 1, 1), ENAMETOOLONG);
  Expect(Lchown("dir/" + kLong, 1, 1), ENAMETOOLONG);
  Expect(Chown("loop", 1, 1), ELOOP);
  Expect(Lchown("loop/x", 1, 1), ELOOP);

  // Unprivileged: only root gives a file away; the owner may change its
  // group to one of theirs; chown(-1, -1) asks nothing of anyone.
  Make(Kind::kRegular, "a", 0644);
  Own("a", kAlice.uid, kAlice.gid);
  Make(Kind::kRegular, "c", 06755);
  Own("c", kCarol.uid, kCarol.gid);
  Must(Chmod("c", 06755));
  Make(Kind::kRegular, "d", 0644);
  Own("d", kDave.uid, kDave.uid);
  Make(Kind::kDirectory, "closed", 0700);
  Make(Kind::kRegular, "closed/f");
  Own("closed/f", kAlice.uid, kAlice.gid);
  struct stat before = L("a");
  Tick();
  ExpectAs(kBob, {{Chown("a", kBob.uid, -1), EPERM},
                  {Chown("a", -1, kBob.gid), EPERM},
                  {Chown("a", kAlice.uid, kAlice.gid), EPERM}});
  ExpectAs(kAlice, {{Chown("a", kBob.uid, -1), EPERM}, {Chown("a", -1, kStaff), EPERM}, {Chown("a", 0, 0), EPERM}});
  struct stat after = L("a");
  ExpectValue("chown by non-owners: st_uid", kAlice.uid, after.st_uid);
  ExpectValue("chown by non-owners: st_gid", kAlice.gid, after.st_gid);
  ExpectSameTime("failed chown (EPERM): ctime", before.st_ctim, after.st_ctim);
  ExpectAs(kBob, {{Chown("a", -1, -1), 0}});
  ExpectAs(kAlice, {{Chown("a", kAlice.uid, -1), 0}, {Chown("a", -1, kAlice.gid), 0}, {Chown("a", -1, -1), 0}});
  before = L("c");
  Tick();
  ExpectAs(kCarol, {{Chown("c", -1, kStaff), 0}});
  after = L("c");
  ExpectValue(As(kCarol) + "chown(c, -1, staff): st_gid", kStaff, after.st_gid);
  ExpectMode(As(kCarol) + "chown(c, -1, staff) of 06755: set-id bits cleared", S_IFREG | 0755, after.st_mode);
  ExpectNewer(As(kCarol) + "chown(c, -1, staff): ctime", before.st_ctim, after.st_ctim);
  ExpectAs(kDave, {{Chown("d", -1, kStaff), 0}});
  ExpectValue(As(kDave) + "chown(d, -1, staff) to his primary group: st_gid", kStaff, L("d").st_gid);
  ExpectAs(kAlice, {{Chown("closed/f", -1, -1), EACCES}});
}

// Writing or truncating a file clears its set-id bits unless root does it.
TEST(Conformance, SetIdClearedOnWrite) {
  Scratch s("setid");
  struct Case {
    const char* name;
    mode_t mode;
    uid_t owner;
    const Cred* writer;  // null: root
    bool truncate;
    mode_t expected;
  };
  const Case kCases[] = {
      {"w-both", 06777, 0, &kAlice, false, 0777},          {"w-suid", 04777, 0, &kAlice, false, 0777},
      {"w-sgid", 02777, 0, &kAlice, false, 0777},          {"w-sgid-nox", 02767, 0, &kAlice, false, 0767},
      {"w-own", 06755, kAlice.uid, &kAlice, false, 0755},  {"w-root", 06777, kAlice.uid, nullptr, false, 06777},
      {"t-both", 06777, 0, &kAlice, true, 0777},           {"t-own", 06755, kAlice.uid, &kAlice, true, 0755},
      {"t-root", 06777, kAlice.uid, nullptr, true, 06777},
  };
  for (const Case& c : kCases) {
    MakeFile(c.name, "original", c.mode, c.owner, 0);
    struct stat before = L(c.name);
    Tick();
    Op op = c.truncate ? Truncate(c.name, 3) : Write(c.name, "changed");
    if (c.writer != nullptr) {
      ExpectAs(*c.writer, {{op, 0}});
    } else {
      Expect(op, 0);
    }
    std::string who = c.writer != nullptr ? As(*c.writer) : "as root: ";
    struct stat after = L(c.name);
    ExpectMode(who + op.what + " of " + Oct(c.mode) + ": st_mode", S_IFREG | c.expected, after.st_mode);
    ExpectNewer(who + op.what + ": mtime", before.st_mtim, after.st_mtim);
    ExpectNewer(who + op.what + ": ctime", before.st_ctim, after.st_ctim);
  }
}

// ---------------------------------------------------------------- sticky directories

TEST(Conformance, StickyDirectories) {
  Scratch s("sticky");
  Make(Kind::kDirectory, "t", 01777);
  ExpectMode("chmod(t, 01777): st_mode", S_IFDIR | 01777, L("t").st_mode);
  Make(Kind::kDirectory, "c", 01777);
  Own("c", kCarol.uid, kCarol.gid);  // a sticky directory carol owns
  Make(Kind::kDirectory, "open", 0777);
  MustAs(kAlice,
         {Open("t/a", O_CREAT | O_WRONLY), Mkdir("t/ad"), Symlink("x", "t/al"), Open("t/a2", O_CREAT | O_WRONLY),
          Open("t/a3", O_CREAT | O_WRONLY), Open("c/a", O_CREAT | O_WRONLY), Open("open/a", O_CREAT | O_WRONLY)});
  MustAs(kBob, {Open("t/b", O_CREAT | O_WRONLY), Open("t/b2", O_CREAT | O_WRONLY)});
  Make(Kind::kRegular, "t/root");

  ExpectAs(kBob, {{Unlink("t/a"), EPERM},
                  {Rmdir("t/ad"), EPERM},
                  {Unlink("t/al"), EPERM},
                  {Rename("t/a", "t/bx"), EPERM},
                  {Rename("t/b", "t/a"), EPERM},
                  {Rename("t/b", "t/ad"), EPERM},
                  {Rename("t/b", "t/a2", RENAME_EXCHANGE), EPERM},
                  {Unlink("t/root"), EPERM},
                  {Unlink("c/a"), EPERM},
                  {Unlink("open/a"), 0},
                  {Rename("t/b", "t/b-renamed"), 0},
                  {Unlink("t/b2"), 0},
                  {Open("t/b3", O_CREAT | O_WRONLY), 0}});
  ExpectValue("sticky t/a after bob's unlink: exists", 1, Exists("t/a"));
  ExpectValue("sticky t/ad after bob's rmdir: exists", 1, Exists("t/ad"));
  ExpectAs(kAlice, {{Unlink("t/a"), 0}, {Rmdir("t/ad"), 0}, {Rename("t/a2", "t/a2-renamed"), 0}});
  ExpectAs(kCarol, {{Unlink("c/a"), 0}});  // the directory's owner may
  Expect(Unlink("t/a3"), 0);               // and root may
  Expect(Unlink("t/b-renamed"), 0);
}

// ---------------------------------------------------------------- link

TEST(Conformance, Link) {
  Scratch s("link");
  Make(Kind::kDirectory, "d");
  Make(Kind::kDirectory, "d2");
  for (const KindInfo& k : kKinds) {
    if (k.kind == Kind::kDirectory) continue;
    std::string src = std::string("d/") + k.name;
    std::string dst = std::string("d2/") + k.name;
    Make(k.kind, src);
    struct stat before = L(src), dir_before = L("d2");
    Tick();
    Op op = Link(src, dst);
    if (!Expect(op, 0)) continue;
    struct stat a = L(src), b = L(dst), dir_after = L("d2");
    ExpectValue(op.what + ": st_nlink", 2, a.st_nlink);
    ExpectValue(op.what + ": the new name's st_ino", a.st_ino, b.st_ino);
    ExpectMode(op.what + ": the new name's st_mode", a.st_mode, b.st_mode);
    ExpectNewer(op.what + ": the file's ctime", before.st_ctim, a.st_ctim);
    ExpectSameTime(op.what + ": the file's mtime", before.st_mtim, a.st_mtim);
    ExpectNewer(op.what + ": the directory's mtime", dir_before.st_mtim, dir_after.st_mtim);
    ExpectNewer(op.what + ": the directory's ctime", dir_before.st_ctim, dir_after.st_ctim);
    // Removing one name leaves the other, one link fewer.
    before = a;
    Tick();
    Op un = Unlink(src);
    Expect(un, 0);
    struct stat left = L(dst);
    ExpectValue(un.what + ": the other name's st_nlink", 1, left.st_nlink);
    ExpectNewer(un.what + ": the other name's ctime", before.st_ctim, left.st_ctim);
  }

  // link() does not follow a symlink; linkat(AT_SYMLINK_FOLLOW) does.
  MakeFile("file", "content");
  Must(Symlink("file", "sym"));
  Expect(Link("sym", "sym-link"), 0);
  ExpectMode("link(sym, sym-link): st_mode", S_IFLNK | 0777, L("sym-link").st_mode);
  Expect(Link("sym", "sym-follow", AT_SYMLINK_FOLLOW), 0);
  ExpectValue("linkat(AT_SYMLINK_FOLLOW, sym, sym-follow): st_ino", L("file").st_ino, L("sym-follow").st_ino);
  ExpectString("linkat(AT_SYMLINK_FOLLOW, sym, sym-follow): content", "content", Contents("sym-follow"));

  // Errors.
  Must(Symlink("loop", "loop"));
  struct stat dir_before = L("d");
  Tick();
  Expect(Link("d", "d-link"), EPERM);
  Expect(Link("file", "d2"), EEXIST);
  Expect(Link("file", "sym"), EEXIST);
  Expect(Link("file", "loop"), EEXIST);
  Expect(Link("file", "file"), EEXIST);
  Expect(Link("missing", "new"), ENOENT);
  Expect(Link("file", "missing/new"), ENOENT);
  Expect(Link("file", "file/new"), ENOTDIR);
  Expect(Link("file/x", "new"), ENOTDIR);
  Expect(Link("file", kLong), ENAMETOOLONG);
  Expect(Link(kLong, "new"), ENAMETOOLONG);
  Expect(Link("file", "d/" + kLong), ENAMETOOLONG);
  Expect(Link("loop/x", "new"), ELOOP);
  Expect(Link("file", "loop/x"), ELOOP);
  Expect(Link("file", "d/" + kMax), 0);
  ExpectNewer("link into d: d's mtime", dir_before.st_mtim, L("d").st_mtim);
  dir_before = L("d");
  Tick();
  Expect(Link("file", "d/" + kMax), EEXIST);
  ExpectSameTime("failed link (EEXIST): the directory's mtime", dir_before.st_mtim, L("d").st_mtim);
  ExpectValue("link(file, ...) x3: st_nlink", 3, L("file").st_nlink);
  if (!Target::Get().other_fs().empty()) Expect(Link("file", Target::Get().other_fs() + "/file"), EXDEV);

  // Unprivileged: write and search permission on the directories.
  Make(Kind::kDirectory, "ro", 0755);
  Make(Kind::kDirectory, "closed", 0700);
  MakeFile("closed/f", "x", 0644, kAlice.uid, kAlice.gid);
  Make(Kind::kDirectory, "rw", 0777);
  MakeFile("mine", "x", 0644, kAlice.uid, kAlice.gid);
  ExpectAs(kAlice, {{Link("mine", "ro/new"), EACCES},
                    {Link("closed/f", "rw/new"), EACCES},
                    {Link("mine", "rw/mine"), 0},
                    {Link("mine", "rw/mine2"), 0}});
  ExpectValue(As(kAlice) + "link(mine, rw/...) x2: st_nlink", 3, L("mine").st_nlink);
  ExpectValue(As(kAlice) + "link(mine, rw/mine): st_uid", kAlice.uid, L("rw/mine").st_uid);
}

// ---------------------------------------------------------------- mkdir

TEST(Conformance, Mkdir) {
  Scratch s("mkdir");
  struct UmaskCase {
    mode_t umask, mode, expected;
  };
  const UmaskCase kUmask[] = {{022, 0777, 0755}, {0, 0777, 0777},   {077, 0755, 0700},
                              {027, 0751, 0750}, {0, 01777, 01777}, {0, 07777, 01777}};
  int i = 0;
  for (const UmaskCase& c : kUmask) {
    std::string name = "u" + std::to_string(i++);
    ::umask(c.umask);
    Op op = Mkdir(name, c.mode);
    Expect(op, 0);
    ::umask(022);
    ExpectMode(op.what + " with umask " + Oct(c.umask) + ": st_mode", S_IFDIR | c.expected, L(name).st_mode);
  }

  Make(Kind::kDirectory, "p");
  struct stat before = L("p");
  Tick();
  Op op = Mkdir("p/new", 0755);
  Expect(op, 0);
  struct stat st = L("p/new"), parent = L("p");
  ExpectValue(op.what + ": st_nlink", 2, st.st_nlink);
  ExpectValue(op.what + ": st_uid", 0, st.st_uid);
  ExpectValue(op.what + ": st_gid", 0, st.st_gid);
  ExpectTime(op.what + ": atime equals mtime", st.st_mtim, st.st_atim);
  ExpectTime(op.what + ": ctime equals mtime", st.st_mtim, st.st_ctim);
  ExpectNewer(op.what + ": the new directory's ctime", before.st_ctim, st.st_ctim);
  ExpectValue(op.what + ": the parent's st_nlink", before.st_nlink + 1, parent.st_nlink);
  ExpectNewer(op.what + ": the parent's mtime", before.st_mtim, parent.st_mtim);
  ExpectNewer(op.what + ": the parent's ctime", before.st_ctim, parent.st_ctim);
  ExpectValue("stat(p/new/..): st_ino", L("p").st_ino, L("p/new/..").st_ino);
  Expect(Mkdir("p/slash/", 0755), 0);

  // Errors; a failed mkdir changes nothing.
  MakeFile("file", "x");
  Must(Symlink("missing", "dangling"));
  Must(Symlink("loop", "loop"));
  Make(Kind::kFifo, "fifo");
  before = L(".");
  Tick();
  Expect(Mkdir("p", 0755), EEXIST);
  Expect(Mkdir("file", 0755), EEXIST);
  Expect(Mkdir("dangling", 0755), EEXIST);
  Expect(Mkdir("loop", 0755), EEXIST);
  Expect(Mkdir("fifo", 0755), EEXIST);
  Expect(Mkdir("missing/new", 0755), ENOENT);
  Expect(Mkdir("file/new", 0755), ENOTDIR);
  Expect(Mkdir("loop/new", 0755), ELOOP);
  Expect(Mkdir(kLong, 0755), ENAMETOOLONG);
  Expect(Mkdir("p/" + kLong, 0755), ENAMETOOLONG);
  ExpectSameTime("failed mkdir: the parent's mtime", before.st_mtim, L(".").st_mtim);
  ExpectValue("failed mkdir: the parent's st_nlink", before.st_nlink, L(".").st_nlink);
  Expect(Mkdir(kMax, 0755), 0);
  ExpectMode("mkdir(255-byte name): st_mode", S_IFDIR | 0755, L(kMax).st_mode);
  Expect(Rmdir(kMax), 0);

  // A set-group-ID directory hands its group down, and the bit to subdirectories.
  Make(Kind::kDirectory, "sgid", 02777);
  Own("sgid", 0, kStaff);
  Must(Chmod("sgid", 02777));
  ExpectAs(kAlice, {{Mkdir("sgid/sub", 0755), 0}, {Open("sgid/file", O_CREAT | O_WRONLY, 0644), 0}});
  st = L("sgid/sub");
  ExpectValue(As(kAlice) + "mkdir(sgid/sub): st_gid", kStaff, st.st_gid);
  ExpectValue(As(kAlice) + "mkdir(sgid/sub): st_uid", kAlice.uid, st.st_uid);
  ExpectMode(As(kAlice) + "mkdir(sgid/sub): st_mode", S_IFDIR | 02755, st.st_mode);
  st = L("sgid/file");
  ExpectValue(As(kAlice) + "open(sgid/file, O_CREAT): st_gid", kStaff, st.st_gid);
  ExpectMode(As(kAlice) + "open(sgid/file, O_CREAT): st_mode", S_IFREG | 0644, st.st_mode);

  // Unprivileged: owner and group of the new directory, write and search permission.
  Make(Kind::kDirectory, "open", 0777);
  Make(Kind::kDirectory, "ro", 0755);
  Make(Kind::kDirectory, "nox", 0666);
  Make(Kind::kDirectory, "staff", 0770);
  Own("staff", 0, kStaff);
  ExpectAs(kAlice, {{Mkdir("open/alice", 0755), 0},
                    {Mkdir("ro/alice", 0755), EACCES},
                    {Mkdir("nox/alice", 0755), EACCES},
                    {Mkdir("staff/alice", 0755), EACCES}});
  st = L("open/alice");
  ExpectValue(As(kAlice) + "mkdir(open/alice): st_uid", kAlice.uid, st.st_uid);
  ExpectValue(As(kAlice) + "mkdir(open/alice): st_gid", kAlice.gid, st.st_gid);
  ExpectAs(kCarol, {{Mkdir("staff/carol", 0755), 0}});
  ExpectValue(As(kCarol) + "mkdir(staff/carol): st_gid is her primary group", kCarol.gid, L("staff/carol").st_gid);
  ExpectAs(kDave, {{Mkdir("staff/dave", 0755), 0}});
  ExpectValue(As(kDave) + "mkdir(staff/dave): st_gid", kStaff, L("staff/dave").st_gid);
}

// ---------------------------------------------------------------- mkfifo and mknod

TEST(Conformance, MkfifoAndMknod) {
  Scratch s("mknod");
  ::umask(027);
  Op fifo = Mkfifo("fifo", 0777);
  Expect(fifo, 0);
  ::umask(022);
  ExpectMode(fifo.what + " with umask 027: st_mode", S_IFIFO | 0750, L("fifo").st_mode);

  struct NodeCase {
    const char* name;
    mode_t mode;
    dev_t dev;
    mode_t expected;  // 0: as mode
  };
  const NodeCase kNodes[] = {
      {"chr", S_IFCHR | 0640, makedev(1, 7), 0},
      {"blk", S_IFBLK | 0600, makedev(7, 3), 0},
      {"chr-big", S_IFCHR | 0644, makedev(4095, 1048575), 0},
      {"blk-big", S_IFBLK | 0644, makedev(259, 65536), 0},
      {"fifo-node", S_IFIFO | 0644, 0, 0},
      {"sock", S_IFSOCK | 0644, 0, 0},
      {"reg", S_IFREG | 0644, 0, 0},
      {"untyped", 0644, 0, S_IFREG | 0644},
  };
  for (const NodeCase& c : kNodes) {
    Op op = Mknod(c.name, c.mode, c.dev);
    if (!Expect(op, 0)) continue;
    struct stat st = L(c.name);
    ExpectMode(op.what + ": st_mode", c.expected ? c.expected : c.mode, st.st_mode);
    if (S_ISCHR(c.mode) || S_ISBLK(c.mode)) {
      ExpectValue(op.what + ": major(st_rdev)", major(c.dev), major(st.st_rdev));
      ExpectValue(op.what + ": minor(st_rdev)", minor(c.dev), minor(st.st_rdev));
    }
    ExpectValue(op.what + ": st_size", 0, st.st_size);
  }
  ::umask(077);
  Op masked = Mknod("masked", S_IFCHR | 0666, makedev(1, 3));
  Expect(masked, 0);
  ::umask(022);
  ExpectMode(masked.what + " with umask 077: st_mode", S_IFCHR | 0600, L("masked").st_mode);

  // Parent times; errors.
  Make(Kind::kDirectory, "p");
  struct stat before = L("p");
  Tick();
  Op in_p = Mkfifo("p/fifo", 0644);
  Expect(in_p, 0);
  ExpectNewer(in_p.what + ": the parent's mtime", before.st_mtim, L("p").st_mtim);
  ExpectNewer(in_p.what + ": the parent's ctime", before.st_ctim, L("p").st_ctim);
  before = L("p");
  Tick();
  Op in_p2 = Mknod("p/chr", S_IFCHR | 0644, makedev(1, 3));
  Expect(in_p2, 0);
  ExpectNewer(in_p2.what + ": the parent's mtime", before.st_mtim, L("p").st_mtim);
  ExpectNewer(in_p2.what + ": the parent's ctime", before.st_ctim, L("p").st_ctim);
  MakeFile("file", "x");
  Expect(Mkfifo("fifo", 0644), EEXIST);
  Expect(Mkfifo("p", 0644), EEXIST);
  Expect(Mknod("file", S_IFCHR | 0644, makedev(1, 3)), EEXIST);
  Expect(Mknod("chr", S_IFIFO | 0644), EEXIST);
  Expect(Mkfifo("missing/f", 0644), ENOENT);
  Expect(Mknod("missing/f", S_IFCHR | 0644, makedev(1, 3)), ENOENT);
  Expect(Mkfifo("file/f", 0644), ENOTDIR);
  Expect(Mknod("file/f", S_IFSOCK | 0644), ENOTDIR);
  Expect(Mkfifo(kLong, 0644), ENAMETOOLONG);
  Expect(Mknod(kLong, S_IFCHR | 0644, makedev(1, 3)), ENAMETOOLONG);
  Expect(Mknod("dirnode", S_IFDIR | 0755), EPERM);
  Expect(Mknod("badtype", 0170000 | 0644), EINVAL);
  Expect(Mkfifo(kMax, 0644), 0);

  // Unprivileged: fifos and sockets yes, devices no.
  Make(Kind::kDirectory, "open", 0777);
  Make(Kind::kDirectory, "ro", 0755);
  ExpectAs(kAlice, {{Mkfifo("open/fifo", 0644), 0},
                    {Mknod("open/sock", S_IFSOCK | 0644), 0},
                    {Mknod("open/reg", S_IFREG | 0644), 0},
                    {Mknod("open/chr", S_IFCHR | 0644, makedev(1, 3)), EPERM},
                    {Mknod("open/blk", S_IFBLK | 0644, makedev(7, 0)), EPERM},
                    {Mkfifo("ro/fifo", 0644), EACCES},
                    {Mknod("ro/sock", S_IFSOCK | 0644), EACCES}});
  struct stat st = L("open/fifo");
  ExpectValue(As(kAlice) + "mkfifo(open/fifo): st_uid", kAlice.uid, st.st_uid);
  ExpectValue(As(kAlice) + "mkfifo(open/fifo): st_gid", kAlice.gid, st.st_gid);
  ExpectMode(As(kAlice) + "mknod(open/sock): st_mode", S_IFSOCK | 0644, L("open/sock").st_mode);
}

// ---------------------------------------------------------------- open

TEST(Conformance, OpenCreate) {
  Scratch s("open-create");
  struct UmaskCase {
    mode_t umask, mode, expected;
  };
  const UmaskCase kUmask[] = {{022, 0666, 0644}, {0, 0777, 0777},     {077, 0666, 0600},
                              {027, 0777, 0750}, {022, 04755, 04755}, {0, 07777, 07777}};
  int i = 0;
  for (const UmaskCase& c : kUmask) {
    std::string name = "u" + std::to_string(i++);
    ::umask(c.umask);
    Op op = Open(name, O_CREAT | O_WRONLY, c.mode);
    Expect(op, 0);
    ::umask(022);
    ExpectMode(op.what + " with umask " + Oct(c.umask) + ": st_mode", S_IFREG | c.expected, L(name).st_mode);
  }

  Make(Kind::kDirectory, "p");
  struct stat before = L("p");
  Tick();
  Op op = Open("p/new", O_CREAT | O_EXCL | O_RDWR, 0644);
  Expect(op, 0);
  struct stat st = L("p/new"), parent = L("p");
  ExpectValue(op.what + ": st_size", 0, st.st_size);
  ExpectValue(op.what + ": st_nlink", 1, st.st_nlink);
  ExpectValue(op.what + ": st_uid", 0, st.st_uid);
  ExpectTime(op.what + ": atime equals mtime", st.st_mtim, st.st_atim);
  ExpectTime(op.what + ": ctime equals mtime", st.st_mtim, st.st_ctim);
  ExpectNewer(op.what + ": the file's mtime", before.st_mtim, st.st_mtim);
  ExpectNewer(op.what + ": the parent's mtime", before.st_mtim, parent.st_mtim);
  ExpectNewer(op.what + ": the parent's ctime", before.st_ctim, parent.st_ctim);
  ExpectValue(op.what + ": the parent's st_nlink", before.st_nlink, parent.st_nlink);

  // O_CREAT on an existing file opens it as it is.
  MakeFile("existing", "keep", 0640);
  before = L("existing");
  struct stat dir_before = L(".");
  Tick();
  Op again = Open("existing", O_CREAT | O_WRONLY, 0777);
  Expect(again, 0);
  ExpectString(again.what + ": content", "keep", Contents("existing"));
  ExpectMode(again.what + ": st_mode", S_IFREG | 0640, L("existing").st_mode);
  ExpectSameTime(again.what + ": mtime", before.st_mtim, L("existing").st_mtim);
  ExpectSameTime(again.what + ": the directory's mtime", dir_before.st_mtim, L(".").st_mtim);

  // O_EXCL.
  Make(Kind::kDirectory, "dir");
  Must(Symlink("existing", "sym"));
  Must(Symlink("nowhere", "dangling"));
  Expect(Open("existing", O_CREAT | O_EXCL | O_WRONLY), EEXIST);
  Expect(Open("dir", O_CREAT | O_EXCL | O_RDONLY), EEXIST);
  Expect(Open("sym", O_CREAT | O_EXCL | O_WRONLY), EEXIST);
  Expect(Open("dangling", O_CREAT | O_EXCL | O_WRONLY), EEXIST);
  ExpectValue("open(dangling, O_CREAT|O_EXCL): the target is not created", 0, Exists("nowhere"));
  // Without O_EXCL a dangling symlink's target is created.
  Expect(Open("dangling", O_CREAT | O_WRONLY, 0600), 0);
  ExpectMode("open(dangling, O_CREAT): the target's st_mode", S_IFREG | 0600, L("nowhere").st_mode);
  ExpectMode("open(dangling, O_CREAT): the link's st_mode", S_IFLNK | 0777, L("dangling").st_mode);

  // Errors.
  Must(Symlink("loop", "loop"));
  Expect(Open("dir", O_CREAT | O_WRONLY), EISDIR);
  Expect(Open("dir", O_CREAT | O_RDONLY), EISDIR);
  Expect(Open("missing/f", O_CREAT | O_WRONLY), ENOENT);
  Expect(Open("existing/f", O_CREAT | O_WRONLY), ENOTDIR);
  Expect(Open("newfile/", O_CREAT | O_WRONLY), EISDIR);
  Expect(Open("loop", O_CREAT | O_WRONLY), ELOOP);
  Expect(Open("loop/f", O_CREAT | O_WRONLY), ELOOP);
  Expect(Open(kLong, O_CREAT | O_WRONLY), ENAMETOOLONG);
  Expect(Open("dir/" + kLong, O_CREAT | O_WRONLY), ENAMETOOLONG);
  Expect(Open(kMax, O_CREAT | O_EXCL | O_WRONLY), 0);
  Expect(Open(kMax, O_RDONLY), 0);
  Expect(Open("new-dir", O_CREAT | O_DIRECTORY | O_RDONLY), EINVAL);
  ExpectValue("open(O_CREAT|O_DIRECTORY): nothing is created", 0, Exists("new-dir"));

  // Unprivileged: owner and group of the new file; write permission on the directory.
  Make(Kind::kDirectory, "open", 0777);
  Make(Kind::kDirectory, "ro", 0755);
  ExpectAs(kAlice, {{Open("open/alice", O_CREAT | O_WRONLY, 0644), 0},
                    {Open("ro/alice", O_CREAT | O_WRONLY, 0644), EACCES},
                    {Open("ro/alice", O_CREAT | O_RDONLY, 0644), EACCES}});
  st = L("open/alice");
  ExpectValue(As(kAlice) + "open(open/alice, O_CREAT): st_uid", kAlice.uid, st.st_uid);
  ExpectValue(As(kAlice) + "open(open/alice, O_CREAT): st_gid", kAlice.gid, st.st_gid);
  // S_ISGID is kept only for a creator in the new file's group (here the
  // group of a set-group-ID directory).
  Make(Kind::kDirectory, "sgid", 02777);
  Own("sgid", 0, kStaff);
  Must(Chmod("sgid", 02777));
  ExpectAs(kAlice, {{Open("sgid/alice", O_CREAT | O_WRONLY, 02755), 0}});
  ExpectAs(kCarol, {{Open("sgid/carol", O_CREAT | O_WRONLY, 02755), 0}});
  ExpectMode(As(kAlice) + "open(sgid/alice, O_CREAT, 02755) outside the group: st_mode", S_IFREG | 0755,
             L("sgid/alice").st_mode);
  ExpectMode(As(kCarol) + "open(sgid/carol, O_CREAT, 02755) in the group: st_mode", S_IFREG | 02755,
             L("sgid/carol").st_mode);
}

TEST(Conformance, OpenFlags) {
  Scratch s("open-flags");
  // O_TRUNC empties a file and stamps it; O_RDONLY leaves it.
  for (int flags : {O_WRONLY | O_TRUNC, O_RDWR | O_TRUNC, O_WRONLY | O_CREAT | O_TRUNC}) {
    std::string name = "trunc" + std::to_string(flags);
    MakeFile(name, "some data");
    struct stat before = L(name);
    Tick();
    Op op = Open(name, flags, 0644);
    Expect(op, 0);
    struct stat st = L(name);
    ExpectValue(op.what + ": st_size", 0, st.st_size);
    ExpectNewer(op.what + ": mtime", before.st_mtim, st.st_mtim);
    ExpectNewer(op.what + ": ctime", before.st_ctim, st.st_ctim);
  }
  MakeFile("empty", "");
  struct stat before = L("empty");
  Tick();
  Expect(Open("empty", O_WRONLY | O_TRUNC), 0);
  ExpectNewer("open(empty, O_WRONLY|O_TRUNC) of an empty file: mtime", before.st_mtim, L("empty").st_mtim);
  ExpectNewer("open(empty, O_WRONLY|O_TRUNC) of an empty file: ctime", before.st_ctim, L("empty").st_ctim);
  MakeFile("kept", "data");
  Expect(Open("kept", O_WRONLY), 0);
  ExpectString("open(kept, O_WRONLY): content", "data", Contents("kept"));

  // O_APPEND: every write lands at the end, whatever the offset.
  MakeFile("log", "abc");
  {
    int fd = ::open("log", O_WRONLY | O_APPEND);
    ExpectErrno("open(log, O_WRONLY|O_APPEND)", 0, fd < 0 ? errno : 0);
    if (fd >= 0) {
      ::lseek(fd, 0, SEEK_SET);
      ExpectValue("write(log) after lseek(0) with O_APPEND", 3, ::write(fd, "def", 3));
      ExpectValue("pwrite(log, offset 1) with O_APPEND", 3, ::pwrite(fd, "ghi", 3, 1));
      ExpectValue("lseek(log, 0, SEEK_CUR): pwrite leaves the offset", 6, ::lseek(fd, 0, SEEK_CUR));
      ::close(fd);
    }
    ExpectString("O_APPEND writes: content", "abcdefghi", Contents("log"));
  }

  // O_NOFOLLOW and O_DIRECTORY.
  MakeFile("file", "x");
  Make(Kind::kDirectory, "dir");
  MakeFile("dir/inner", "y");
  Must(Symlink("file", "sym"));
  Must(Symlink("dir", "dirsym"));
  Must(Symlink("nowhere", "dangling"));
  Expect(Open("sym", O_RDONLY | O_NOFOLLOW), ELOOP);
  Expect(Open("dangling", O_RDONLY | O_NOFOLLOW), ELOOP);
  Expect(Open("dangling", O_CREAT | O_WRONLY | O_NOFOLLOW), ELOOP);
  Expect(Open("dirsym", O_RDONLY | O_NOFOLLOW), ELOOP);
  Expect(Open("file", O_RDONLY | O_NOFOLLOW), 0);
  Expect(Open("dirsym/inner", O_RDONLY | O_NOFOLLOW), 0);
  Expect(Open("sym", O_PATH | O_NOFOLLOW), 0);
  Expect(Open("file", O_RDONLY | O_DIRECTORY), ENOTDIR);
  Expect(Open("sym", O_RDONLY | O_DIRECTORY), ENOTDIR);
  Expect(Open("dir", O_RDONLY | O_DIRECTORY), 0);
  Expect(Open("dirsym", O_RDONLY | O_DIRECTORY), 0);
  Expect(Open("dirsym", O_RDONLY | O_DIRECTORY | O_NOFOLLOW), ENOTDIR);
  Expect(Open("file/", O_RDONLY), ENOTDIR);
  Expect(Open("dir/", O_RDONLY), 0);

  // Directories, fifos, sockets.
  Expect(Open("dir", O_WRONLY), EISDIR);
  Expect(Open("dir", O_RDWR), EISDIR);
  Expect(Open("dir", O_RDONLY), 0);
  Expect(Open("dir", O_RDONLY | O_TRUNC), EISDIR);
  Make(Kind::kFifo, "fifo");
  Expect(Open("fifo", O_WRONLY | O_NONBLOCK), ENXIO);
  Expect(Open("fifo", O_RDONLY | O_NONBLOCK), 0);
  Make(Kind::kSocket, "socket");
  Expect(Open("socket", O_RDONLY), ENXIO);

  // Errors of the path.
  Must(Symlink("loop", "loop"));
  Expect(Open("missing", O_RDONLY), ENOENT);
  Expect(Open("dangling", O_RDONLY), ENOENT);
  Expect(Open("file/x", O_RDONLY), ENOTDIR);
  Expect(Open("loop", O_RDONLY), ELOOP);
  Expect(Open(kLong, O_RDONLY), ENAMETOOLONG);
  Expect(Open(std::string(5000, 'p'), O_RDONLY), ENAMETOOLONG);

  // Root reads and writes whatever the mode; executes only with an x bit.
  MakeFile("none", "x", 0000);
  MakeFile("xonly", "x", 0100);
  Make(Kind::kDirectory, "nodir", 0000);
  Expect(Open("none", O_RDWR), 0);
  Expect(Access("none", R_OK | W_OK), 0);
  Expect(Access("none", X_OK), EACCES);
  Expect(Access("xonly", X_OK), 0);
  Expect(Access("nodir", X_OK), 0);
  Expect(Opendir("nodir"), 0);
}

// The mode bits, class by class: the owner's bits for the owner, the
// group's for a member (primary or supplementary group), the others' for
// the rest, and nothing more (an owner is refused what only others may).
mode_t Granted(const Cred& who, uid_t uid, gid_t gid, mode_t mode) {
  if (who.uid == uid) return (mode >> 6) & 7;
  if (who.gid == gid || std::find(who.groups.begin(), who.groups.end(), gid) != who.groups.end()) {
    return (mode >> 3) & 7;
  }
  return mode & 7;
}

TEST(Conformance, FilePermissions) {
  Scratch s("file-perm");
  const mode_t kModes[] = {0000, 0400, 0200, 0600, 0040, 0020, 0060, 0004, 0002, 0006, 0077, 0707, 0770};
  const Cred* kUsers[] = {&kAlice, &kCarol, &kDave, &kBob};
  for (mode_t m : kModes) MakeFile("f" + Oct(m), "x", m, kAlice.uid, kStaff);
  for (const Cred* who : kUsers) {
    std::vector<std::pair<Op, int>> cases;
    for (mode_t m : kModes) {
      mode_t g = Granted(*who, kAlice.uid, kStaff, m);
      std::string name = "f" + Oct(m);
      cases.push_back({Open(name, O_RDONLY), (g & 4) ? 0 : EACCES});
      cases.push_back({Open(name, O_WRONLY), (g & 2) ? 0 : EACCES});
      cases.push_back({Open(name, O_RDWR), (g & 6) == 6 ? 0 : EACCES});
    }
    ExpectAs(*who, cases);
  }
  // O_TRUNC needs write permission; O_CREAT of an existing file needs the
  // permission of the access mode only.
  MakeFile("ro-file", "data", 0644);
  ExpectAs(kAlice, {{Open("ro-file", O_RDONLY | O_TRUNC), EACCES},
                    {Open("ro-file", O_WRONLY | O_TRUNC), EACCES},
                    {Open("ro-file", O_CREAT | O_RDONLY, 0644), 0},
                    {Open("ro-file", O_CREAT | O_WRONLY, 0644), EACCES},
                    {Access("ro-file", R_OK), 0},
                    {Access("ro-file", W_OK), EACCES},
                    {Access("ro-file", X_OK), EACCES}});
  ExpectString("refused O_TRUNC: content", "data", Contents("ro-file"));
}

TEST(Conformance, DirectoryPermissions) {
  Scratch s("dir-perm");
  const mode_t kModes[] = {0700, 0500, 0300, 0100, 0600, 0000, 0070, 0050, 0030, 0010, 0007, 0005, 0003, 0001};
  const Cred* kUsers[] = {&kAlice, &kCarol, &kDave, &kBob};
  for (mode_t m : kModes) {
    std::string d = "d" + Oct(m);
    Make(Kind::kDirectory, d, 0777);
    MakeFile(d + "/f", "x", 0644);
    Own(d, kAlice.uid, kStaff);
    Must(Chmod(d, m));
  }
  for (const Cred* who : kUsers) {
    std::vector<std::pair<Op, int>> cases;
    for (mode_t m : kModes) {
      mode_t g = Granted(*who, kAlice.uid, kStaff, m);
      std::string d = "d" + Oct(m);
      cases.push_back({Stat(d + "/f"), (g & 1) ? 0 : EACCES});                                      // search
      cases.push_back({Opendir(d), (g & 4) ? 0 : EACCES});                                          // read
      cases.push_back({Open(d + "/" + who->name, O_CREAT | O_WRONLY), (g & 3) == 3 ? 0 : EACCES});  // write
    }
    ExpectAs(*who, cases);
  }
  // Search permission is needed on every directory of the path.
  Make(Kind::kDirectory, "outer", 0700);
  Make(Kind::kDirectory, "outer/inner", 0777);
  MakeFile("outer/inner/f", "x", 0666);
  ExpectAs(kAlice, {{Stat("outer/inner/f"), EACCES},
                    {Open("outer/inner/f", O_RDONLY), EACCES},
                    {Open("outer/inner/new", O_CREAT | O_WRONLY), EACCES},
                    {Access("outer/inner/f", F_OK), EACCES}});
}

// ---------------------------------------------------------------- rename

TEST(Conformance, Rename) {
  Scratch s("rename");
  Make(Kind::kDirectory, "a");
  Make(Kind::kDirectory, "b");
  // Every kind, across directories: same inode, new name, times.
  for (const KindInfo& k : kKinds) {
    std::string from = std::string("a/") + k.name, to = std::string("b/") + k.name;
    Make(k.kind, from);
    struct stat before = L(from), a_before = L("a"), b_before = L("b");
    Tick();
    Op op = Rename(from, to);
    if (!Expect(op, 0)) continue;
    struct stat st = L(to), a_after = L("a"), b_after = L("b");
    ExpectValue(op.what + ": st_ino", before.st_ino, st.st_ino);
    ExpectMode(op.what + ": st_mode", before.st_mode, st.st_mode);
    ExpectValue(op.what + ": the old name is gone", 0, Exists(from));
    ExpectNewer(op.what + ": ctime", before.st_ctim, st.st_ctim);
    ExpectSameTime(op.what + ": mtime", before.st_mtim, st.st_mtim);
    ExpectNewer(op.what + ": the source directory's mtime", a_before.st_mtim, a_after.st_mtim);
    ExpectNewer(op.what + ": the source directory's ctime", a_before.st_ctim, a_after.st_ctim);
    ExpectNewer(op.what + ": the target directory's mtime", b_before.st_mtim, b_after.st_mtim);
    ExpectNewer(op.what + ": the target directory's ctime", b_before.st_ctim, b_after.st_ctim);
  }
  // A directory moved across: link counts of both parents, and its "..".
  Make(Kind::kDirectory, "a/sub");
  struct stat a_before = L("a"), b_before = L("b");
  Expect(Rename("a/sub", "b/sub"), 0);
  ExpectValue("rename(a/sub, b/sub): a's st_nlink", a_before.st_nlink - 1, L("a").st_nlink);
  ExpectValue("rename(a/sub, b/sub): b's st_nlink", b_before.st_nlink + 1, L("b").st_nlink);
  ExpectValue("rename(a/sub, b/sub): stat(b/sub/..) is b", L("b").st_ino, L("b/sub/..").st_ino);
  // Within one directory.
  MakeFile("f1", "one");
  struct stat dir_before = L(".");
  Tick();
  Expect(Rename("f1", "f2"), 0);
  ExpectString("rename(f1, f2): content", "one", Contents("f2"));
  ExpectNewer("rename(f1, f2): the directory's mtime", dir_before.st_mtim, L(".").st_mtim);
  ExpectValue("rename(f1, f2): the directory's st_nlink", dir_before.st_nlink, L(".").st_nlink);

  // Over an existing name: the old target loses a link.
  MakeFile("src", "new");
  MakeFile("dst", "old");
  Must(Link("dst", "dst-other"));
  struct stat victim = L("dst"), src_before = L("src");
  Tick();
  Expect(Rename("src", "dst"), 0);
  ExpectString("rename(src, dst) over a file: content", "new", Contents("dst"));
  ExpectValue("rename(src, dst) over a file: st_ino", src_before.st_ino, L("dst").st_ino);
  ExpectValue("rename(src, dst) over a file: the replaced file's st_nlink", 1, L("dst-other").st_nlink);
  ExpectNewer("rename(src, dst) over a file: the replaced file's ctime", victim.st_ctim, L("dst-other").st_ctim);
  Make(Kind::kDirectory, "emptydir");
  Make(Kind::kDirectory, "target-empty");
  Make(Kind::kDirectory, "sub-holder");
  Make(Kind::kDirectory, "sub-holder/x");
  dir_before = L(".");
  Expect(Rename("emptydir", "target-empty"), 0);
  ExpectValue("rename(emptydir, target-empty) over an empty directory: st_nlink of the parent", dir_before.st_nlink - 1,
              L(".").st_nlink);
  Must(Symlink("f2", "sym"));
  MakeFile("f3", "three");
  Expect(Rename("f3", "sym"), 0);
  ExpectMode("rename(f3, sym) over a symlink: st_mode", S_IFREG | 0644, L("sym").st_mode);
  ExpectString("rename(f3, sym) over a symlink: the link's old target", "one", Contents("f2"));
  Must(Symlink("f2", "sym2"));
  Expect(Rename("sym2", "moved-sym"), 0);
  ExpectString("rename(sym2, moved-sym): readlink", "f2", ReadLink("moved-sym"));

  // Same file: nothing happens.
  Must(Link("f2", "f2-link"));
  Expect(Rename("f2", "f2"), 0);
  Expect(Rename("f2", "f2-link"), 0);
  ExpectValue("rename between two links of one file: both stay", 2,
              static_cast<int>(Exists("f2")) + static_cast<int>(Exists("f2-link")));
  ExpectValue("rename between two links of one file: st_nlink", 2, L("f2").st_nlink);

  // Errors; a failed rename changes nothing.
  Make(Kind::kDirectory, "full");
  MakeFile("full/f", "x");
  Make(Kind::kDirectory, "d1");
  Make(Kind::kDirectory, "d1/d2");
  Make(Kind::kDirectory, "d1/d2/d3");
  MakeFile("file", "x");
  Must(Symlink("loop", "loop"));
  Must(Symlink("sub-holder", "dirsym"));
  dir_before = L(".");
  Tick();
  Expect(Rename("sub-holder", "full"), ENOTEMPTY);
  Expect(Rename("file", "full"), EISDIR);
  Expect(Rename("file", "sub-holder/x"), EISDIR);
  Expect(Rename("sub-holder", "file"), ENOTDIR);
  Expect(Rename("sub-holder", "dirsym"), ENOTDIR);
  Expect(Rename("dirsym", "full"), EISDIR);
  Expect(Rename("d1", "d1/d2/d3/d4"), EINVAL);
  Expect(Rename("d1", "d1/x"), EINVAL);
  Expect(Rename("d1/d2/..", "x"), EBUSY);
  Expect(Rename("d1", "d1/d2/.."), EBUSY);
  Expect(Rename("missing", "x"), ENOENT);
  Expect(Rename("file", "missing/x"), ENOENT);
  Expect(Rename("file/x", "y"), ENOTDIR);
  Expect(Rename("file", "file/y"), ENOTDIR);
  Expect(Rename("file", "new/"), ENOTDIR);
  Expect(Rename("file/", "new"), ENOTDIR);
  Expect(Rename(kLong, "x"), ENAMETOOLONG);
  Expect(Rename("file", kLong), ENAMETOOLONG);
  Expect(Rename("file", "full/" + kLong), ENAMETOOLONG);
  Expect(Rename("loop/x", "y"), ELOOP);
  Expect(Rename("file", "loop/y"), ELOOP);
  ExpectSameTime("failed renames: the directory's mtime", dir_before.st_mtim, L(".").st_mtim);
  ExpectValue("failed renames: full/f is still there", 1, Exists("full/f"));
  ExpectValue("failed renames: d1/d2/d3 is still there", 1, Exists("d1/d2/d3"));
  Expect(Rename("file", kMax), 0);
  Expect(Rename("sub-holder", "moved-dir/"), 0);
  Expect(Rename("moved-dir/", "moved-dir2"), 0);
  if (!Target::Get().other_fs().empty()) {
    MakeFile(Target::Get().other_fs() + "/there", "x");
    Expect(Rename(kMax, Target::Get().other_fs() + "/file"), EXDEV);
    Expect(Rename("d1", Target::Get().other_fs() + "/d1"), EXDEV);
    Expect(Rename(Target::Get().other_fs() + "/there", "here"), EXDEV);
    Expect(Rename(kMax, Target::Get().other_fs() + "/there", RENAME_EXCHANGE), EXDEV);
  }

  // Unprivileged.
  Make(Kind::kDirectory, "ro", 0755);
  MakeFile("ro/f", "x", 0666);
  Make(Kind::kDirectory, "rw", 0777);
  Make(Kind::kDirectory, "rw2", 0777);
  MustAs(kAlice, {Open("rw/mine", O_CREAT | O_WRONLY), Mkdir("rw/mydir", 0755), Mkdir("rw/locked", 0555),
                  Mkdir("rw/locked2", 0555)});
  ExpectAs(kAlice, {{Rename("ro/f", "rw/f"), EACCES},
                    {Rename("rw/mine", "ro/mine"), EACCES},
                    {Rename("ro/f", "ro/g"), EACCES},
                    {Rename("rw/mine", "rw2/mine"), 0},
                    {Rename("rw/mydir", "rw2/mydir"), 0},
                    // Moving a directory to another parent rewrites its "..".
                    {Rename("rw/locked", "rw2/locked"), EACCES},
                    {Rename("rw/locked2", "rw/locked3"), 0}});
}

TEST(Conformance, RenameFlags) {
  Scratch s("renameat2");
  MakeFile("a", "A");
  MakeFile("b", "B");
  struct stat a_before = L("a"), b_before = L("b");
  Expect(Rename("a", "b", RENAME_NOREPLACE), EEXIST);
  ExpectString("renameat2(RENAME_NOREPLACE, a, b): b's content", "B", Contents("b"));
  ExpectValue("renameat2(RENAME_NOREPLACE, a, b): a stays", 1, Exists("a"));
  Make(Kind::kDirectory, "dir");
  Expect(Rename("a", "dir", RENAME_NOREPLACE), EEXIST);
  Expect(Rename("a", "c", RENAME_NOREPLACE), 0);
  ExpectValue("renameat2(RENAME_NOREPLACE, a, c): st_ino", a_before.st_ino, L("c").st_ino);
  ExpectValue("renameat2(RENAME_NOREPLACE, a, c): a is gone", 0, Exists("a"));

  Tick();
  Expect(Rename("b", "c", RENAME_EXCHANGE), 0);
  ExpectString("renameat2(RENAME_EXCHANGE, b, c): b's content", "A", Contents("b"));
  ExpectString("renameat2(RENAME_EXCHANGE, b, c): c's content", "B", Contents("c"));
  ExpectValue("renameat2(RENAME_EXCHANGE, b, c): c's st_ino", b_before.st_ino, L("c").st_ino);
  ExpectNewer("renameat2(RENAME_EXCHANGE, b, c): ctime of one", b_before.st_ctim, L("c").st_ctim);
  ExpectNewer("renameat2(RENAME_EXCHANGE, b, c): ctime of the other", a_before.st_ctim, L("b").st_ctim);
  Expect(Rename("b", "missing", RENAME_EXCHANGE), ENOENT);
  Expect(Rename("missing", "b", RENAME_EXCHANGE), ENOENT);
  Expect(Rename("b", "c", RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);
  Expect(Rename("b", "c", 1u << 7), EINVAL);

  // A directory and a file swap places across parents: link counts and "..".
  Make(Kind::kDirectory, "p");
  Make(Kind::kDirectory, "q");
  Make(Kind::kDirectory, "p/d");
  Make(Kind::kDirectory, "p/d/inner");
  MakeFile("q/f", "F");
  struct stat p_before = L("p"), q_before = L("q"), d_before = L("p/d");
  Tick();
  Expect(Rename("p/d", "q/f", RENAME_EXCHANGE), 0);
  ExpectMode("renameat2(RENAME_EXCHANGE, p/d, q/f): p/d's st_mode", S_IFREG | 0644, L("p/d").st_mode);
  ExpectValue("renameat2(RENAME_EXCHANGE, p/d, q/f): q/f's st_ino", d_before.st_ino, L("q/f").st_ino);
  ExpectValue("renameat2(RENAME_EXCHANGE, p/d, q/f): p's st_nlink", p_before.st_nlink - 1, L("p").st_nlink);
  ExpectValue("renameat2(RENAME_EXCHANGE, p/d, q/f): q's st_nlink", q_before.st_nlink + 1, L("q").st_nlink);
  ExpectValue("renameat2(RENAME_EXCHANGE, p/d, q/f): stat(q/f/..) is q", L("q").st_ino, L("q/f/..").st_ino);
  ExpectNewer("renameat2(RENAME_EXCHANGE, p/d, q/f): p's mtime", p_before.st_mtim, L("p").st_mtim);
  ExpectNewer("renameat2(RENAME_EXCHANGE, p/d, q/f): q's mtime", q_before.st_mtim, L("q").st_mtim);
  Expect(Rename("q/f", "q/f/inner", RENAME_EXCHANGE), EINVAL);
  Expect(Rename("q/f/inner", "q/f", RENAME_EXCHANGE), EINVAL);
  // Two directories swap; each keeps its content.
  Make(Kind::kDirectory, "x");
  MakeFile("x/in-x", "");
  Make(Kind::kDirectory, "y");
  MakeFile("y/in-y", "");
  Expect(Rename("x", "y", RENAME_EXCHANGE), 0);
  ExpectValue("renameat2(RENAME_EXCHANGE, x, y): x holds in-y", 1, Exists("x/in-y"));
  ExpectValue("renameat2(RENAME_EXCHANGE, x, y): y holds in-x", 1, Exists("y/in-x"));
  Make(Kind::kDirectory, "ro", 0755);
  MakeFile("ro/1", "1", 0666);
  MakeFile("ro/2", "2", 0666);
  ExpectAs(kAlice,
           {{Rename("ro/1", "ro/2", RENAME_EXCHANGE), EACCES}, {Rename("ro/1", "ro/3", RENAME_NOREPLACE), EACCES}});
}

// ---------------------------------------------------------------- rmdir

TEST(Conformance, Rmdir) {
  Scratch s("rmdir");
  Make(Kind::kDirectory, "p");
  Make(Kind::kDirectory, "p/d");
  struct stat before = L("p");
  Tick();
  Expect(Rmdir("p/d"), 0);
  struct stat after = L("p");
  ExpectValue("rmdir(p/d): gone", 0, Exists("p/d"));
  ExpectValue("rmdir(p/d): the parent's st_nlink", before.st_nlink - 1, after.st_nlink);
  ExpectNewer("rmdir(p/d): the parent's mtime", before.st_mtim, after.st_mtim);
  ExpectNewer("rmdir(p/d): the parent's ctime", before.st_ctim, after.st_ctim);
  Make(Kind::kDirectory, "slash");
  Expect(Rmdir("slash/"), 0);

  // Errors.
  Make(Kind::kDirectory, "withfile");
  MakeFile("withfile/f", "");
  Make(Kind::kDirectory, "withdir");
  Make(Kind::kDirectory, "withdir/d");
  Make(Kind::kDirectory, "withlink");
  Must(Symlink("x", "withlink/l"));
  Make(Kind::kDirectory, "withfifo");
  Make(Kind::kFifo, "withfifo/p");
  MakeFile("file", "");
  Must(Symlink("withdir", "dirsym"));
  Must(Symlink("loop", "loop"));
  before = L(".");
  Tick();
  Expect(Rmdir("withfile"), ENOTEMPTY);
  Expect(Rmdir("withdir"), ENOTEMPTY);
  Expect(Rmdir("withlink"), ENOTEMPTY);
  Expect(Rmdir("withfifo"), ENOTEMPTY);
  Expect(Rmdir("file"), ENOTDIR);
  Expect(Rmdir("dirsym"), ENOTDIR);
  Expect(Rmdir("file/x"), ENOTDIR);
  Expect(Rmdir("missing"), ENOENT);
  Expect(Rmdir("withdir/d/."), EINVAL);
  Expect(Rmdir("withdir/d/.."), ENOTEMPTY);
  Expect(Rmdir(kLong), ENAMETOOLONG);
  Expect(Rmdir("loop/x"), ELOOP);
  ExpectSameTime("failed rmdirs: the parent's mtime", before.st_mtim, L(".").st_mtim);
  ExpectValue("failed rmdirs: the parent's st_nlink", before.st_nlink, L(".").st_nlink);
  if (OnQcfs()) Expect(Rmdir(Target::Get().root()), EBUSY);

  // An open directory that is removed: no link left, nothing can be created in it.
  Make(Kind::kDirectory, "doomed");
  int fd = ::open("doomed", O_RDONLY | O_DIRECTORY);
  ExpectErrno("open(doomed, O_DIRECTORY)", 0, fd < 0 ? errno : 0);
  Expect(Rmdir("doomed"), 0);
  if (fd >= 0) {
    struct stat st {};
    ExpectErrno("fstat(removed directory)", 0, Res(::fstat(fd, &st)));
    ExpectValue("fstat(removed directory): st_nlink", 0, st.st_nlink);
    ExpectErrno("openat(removed directory, new, O_CREAT)", ENOENT,
                FdRes(::openat(fd, "new", O_CREAT | O_WRONLY, 0644)));
    ExpectErrno("mkdirat(removed directory, new)", ENOENT, Res(::mkdirat(fd, "new", 0755)));
    ::close(fd);
  }

  // Unprivileged.
  Make(Kind::kDirectory, "ro", 0755);
  Make(Kind::kDirectory, "ro/d");
  Make(Kind::kDirectory, "rw", 0777);
  Make(Kind::kDirectory, "rw/d");
  ExpectAs(kAlice, {{Rmdir("ro/d"), EACCES}, {Rmdir("rw/d"), 0}});
}

// ---------------------------------------------------------------- symlink

TEST(Conformance, Symlink) {
  Scratch s("symlink");
  Make(Kind::kDirectory, "p");
  struct stat before = L("p");
  Tick();
  Op op = Symlink("some/target", "p/l");
  Expect(op, 0);
  struct stat st = L("p/l");
  ExpectString(op.what + ": readlink", "some/target", ReadLink("p/l"));
  ExpectMode(op.what + ": st_mode", S_IFLNK | 0777, st.st_mode);
  ExpectValue(op.what + ": st_size", 11, st.st_size);
  ExpectValue(op.what + ": st_nlink", 1, st.st_nlink);
  ExpectNewer(op.what + ": the parent's mtime", before.st_mtim, L("p").st_mtim);
  ExpectNewer(op.what + ": the parent's ctime", before.st_ctim, L("p").st_ctim);
  {
    char buf[4];
    ExpectValue("readlink(p/l) into 4 bytes: truncated", 4, ::readlink("p/l", buf, sizeof buf));
  }

  // Target lengths: PATH_MAX - 1 is the longest.
  std::string t4095(4095, 't');
  Expect(Symlink(t4095, "long"), 0);
  ExpectValue("symlink(4095-byte target): readlink length", 4095, static_cast<long long>(ReadLink("long").size()));
  ExpectValue("symlink(4095-byte target): st_size", 4095, L("long").st_size);
  Expect(Symlink(std::string(4096, 't'), "too-long"), ENAMETOOLONG);
  Expect(Symlink("x", kLong), ENAMETOOLONG);
  Expect(Symlink("x", "p/" + kLong), ENAMETOOLONG);
  Expect(Symlink(kLong, "long-component"), 0);  // a target is not looked up
  Expect(Symlink("x", kMax), 0);
  Expect(Symlink("", "empty"), ENOENT);

  // Existing names; bad paths.
  MakeFile("file", "x");
  Make(Kind::kDirectory, "dir");
  Must(Symlink("nowhere", "dangling"));
  Must(Symlink("loop", "loop"));
  Expect(Symlink("x", "file"), EEXIST);
  Expect(Symlink("x", "dir"), EEXIST);
  Expect(Symlink("x", "dangling"), EEXIST);
  Expect(Symlink("x", "loop"), EEXIST);
  Expect(Symlink("x", "missing/l"), ENOENT);
  Expect(Symlink("x", "file/l"), ENOTDIR);
  Expect(Symlink("x", "loop/l"), ELOOP);

  // Following: dangling, loops, and the kernel's limit of 40 links.
  Expect(Stat("dangling"), ENOENT);
  Expect(Lstat("dangling"), 0);
  Expect(Stat("loop"), ELOOP);
  Must(Symlink("ping", "pong"));
  Must(Symlink("pong", "ping"));
  Expect(Stat("ping"), ELOOP);
  Expect(Open("ping", O_RDONLY), ELOOP);
  MakeFile("end", "reached");
  for (int i = 0; i < 41; ++i) Must(Symlink(i == 0 ? "end" : "c" + std::to_string(i - 1), "c" + std::to_string(i)));
  Expect(Stat("c39"), 0);  // 40 links
  Expect(Stat("c40"), ELOOP);
  ExpectString("open(c39) through 40 links: content", "reached", Contents("c39"));
  Must(Symlink("dir", "dirlink"));
  MakeFile("dir/inner", "in");
  ExpectString("open(dirlink/inner): content", "in", Contents("dirlink/inner"));
  Must(Symlink("../dir/inner", "p/up"));
  ExpectString("open(p/up) through a relative target: content", "in", Contents("p/up"));
  Expect(Readlink("file"), EINVAL);
  Expect(Readlink("missing"), ENOENT);

  // Unprivileged.
  Make(Kind::kDirectory, "ro", 0755);
  Make(Kind::kDirectory, "rw", 0777);
  ExpectAs(kAlice, {{Symlink("x", "ro/l"), EACCES}, {Symlink("x", "rw/l"), 0}});
  st = L("rw/l");
  ExpectValue(As(kAlice) + "symlink(x, rw/l): st_uid", kAlice.uid, st.st_uid);
  ExpectValue(As(kAlice) + "symlink(x, rw/l): st_gid", kAlice.gid, st.st_gid);
}

// ---------------------------------------------------------------- truncate

TEST(Conformance, Truncate) {
  Scratch s("truncate");
  MakeFile("f", "0123456789");
  struct stat before = L("f");
  Tick();
  Expect(Truncate("f", 4), 0);
  struct stat st = L("f");
  ExpectValue("truncate(f, 4): st_size", 4, st.st_size);
  ExpectString("truncate(f, 4): content", "0123", Contents("f"));
  ExpectNewer("truncate(f, 4): mtime", before.st_mtim, st.st_mtim);
  ExpectNewer("truncate(f, 4): ctime", before.st_ctim, st.st_ctim);
  before = st;
  Tick();
  Expect(Truncate("f", 100000), 0);
  st = L("f");
  ExpectValue("truncate(f, 100000): st_size", 100000, st.st_size);
  ExpectString("truncate(f, 100000): content", "0123" + std::string(99996, '\0'), Contents("f"));
  ExpectNewer("truncate(f, 100000): mtime", before.st_mtim, st.st_mtim);
  ExpectNewer("truncate(f, 100000): ctime", before.st_ctim, st.st_ctim);
  Expect(Truncate("f", 0), 0);
  ExpectValue("truncate(f, 0): st_size", 0, L("f").st_size);

  int fd = ::open("f", O_RDWR);
  ExpectErrno("open(f, O_RDWR)", 0, fd < 0 ? errno : 0);
  if (fd >= 0) {
    before = L("f");
    Tick();
    ExpectErrno("ftruncate(f, 12345)", 0, Res(::ftruncate(fd, 12345)));
    st = L("f");
    ExpectValue("ftruncate(f, 12345): st_size", 12345, st.st_size);
    ExpectNewer("ftruncate(f, 12345): mtime", before.st_mtim, st.st_mtim);
    ExpectNewer("ftruncate(f, 12345): ctime", before.st_ctim, st.st_ctim);
    ExpectErrno("ftruncate(f, -1)", EINVAL, Res(::ftruncate(fd, -1)));
    ::close(fd);
  }
  fd = ::open("f", O_RDONLY);
  if (fd >= 0) {
    ExpectErrno("ftruncate(fd opened O_RDONLY, 0)", EINVAL, Res(::ftruncate(fd, 0)));
    ::close(fd);
  }
  ExpectValue("refused ftruncates: st_size", 12345, L("f").st_size);

  // Through a symlink; errors.
  Must(Symlink("f", "sym"));
  Expect(Truncate("sym", 7), 0);
  ExpectValue("truncate(sym, 7): the target's st_size", 7, L("f").st_size);
  Make(Kind::kDirectory, "dir");
  Make(Kind::kFifo, "fifo");
  Must(Symlink("loop", "loop"));
  Expect(Truncate("dir", 0), EISDIR);
  Expect(Truncate("fifo", 0), EINVAL);
  Expect(Truncate("f", -1), EINVAL);
  Expect(Truncate("missing", 0), ENOENT);
  Expect(Truncate("f/x", 0), ENOTDIR);
  Expect(Truncate(kLong, 0), ENAMETOOLONG);
  Expect(Truncate("loop", 0), ELOOP);

  // Unprivileged: write permission.
  MakeFile("ro", "data", 0644);
  MakeFile("rw", "data", 0666);
  MakeFile("mine-ro", "data", 0444, kAlice.uid, kAlice.gid);
  ExpectAs(kAlice, {{Truncate("ro", 0), EACCES}, {Truncate("rw", 1), 0}, {Truncate("mine-ro", 0), EACCES}});
  ExpectValue(As(kAlice) + "truncate(ro, 0): st_size unchanged", 4, L("ro").st_size);
  ExpectValue(As(kAlice) + "truncate(rw, 1): st_size", 1, L("rw").st_size);
}

// ---------------------------------------------------------------- unlink

TEST(Conformance, Unlink) {
  Scratch s("unlink");
  Make(Kind::kDirectory, "p");
  for (const KindInfo& k : kKinds) {
    if (k.kind == Kind::kDirectory) continue;
    std::string path = std::string("p/") + k.name;
    Make(k.kind, path);
    struct stat before = L("p");
    Tick();
    Op op = Unlink(path);
    if (!Expect(op, 0)) continue;
    struct stat after = L("p");
    ExpectValue(op.what + ": gone", 0, Exists(path));
    ExpectNewer(op.what + ": the parent's mtime", before.st_mtim, after.st_mtim);
    ExpectNewer(op.what + ": the parent's ctime", before.st_ctim, after.st_ctim);
  }
  // A symlink goes, its target stays.
  MakeFile("target", "t");
  Must(Symlink("target", "sym"));
  Expect(Unlink("sym"), 0);
  ExpectValue("unlink(sym): the target stays", 1, Exists("target"));

  // An open file outlives its name.
  MakeFile("open", "still here");
  int fd = ::open("open", O_RDWR);
  ExpectErrno("open(open, O_RDWR)", 0, fd < 0 ? errno : 0);
  Expect(Unlink("open"), 0);
  if (fd >= 0) {
    struct stat st {};
    ExpectErrno("fstat(unlinked file)", 0, Res(::fstat(fd, &st)));
    ExpectValue("fstat(unlinked file): st_nlink", 0, st.st_nlink);
    char buf[32] = {};
    ExpectValue("pread(unlinked file)", 10, ::pread(fd, buf, sizeof buf, 0));
    ExpectString("pread(unlinked file): content", "still here", std::string(buf, 10));
    ExpectValue("pwrite(unlinked file)", 4, ::pwrite(fd, "more", 4, 10));
    ExpectErrno("fstat(unlinked file) after writing", 0, Res(::fstat(fd, &st)));
    ExpectValue("fstat(unlinked file) after writing: st_size", 14, st.st_size);
    // Its attributes still change through the descriptor.
    const timespec t[2] = {{1000, 1}, {2000, 2}};
    ExpectErrno("fchmod(unlinked file, 0600)", 0, Res(::fchmod(fd, 0600)));
    ExpectErrno("fchown(unlinked file, 1001, 1001)", 0, Res(::fchown(fd, kAlice.uid, kAlice.gid)));
    ExpectErrno("ftruncate(unlinked file, 2)", 0, Res(::ftruncate(fd, 2)));
    ExpectErrno("futimens(unlinked file, explicit)", 0, Res(::futimens(fd, t)));
    ExpectErrno("fsetxattr(unlinked file, user.a)", 0, Res(::fsetxattr(fd, "user.a", "v", 1, 0)));
    ExpectErrno("fstat(unlinked file) after the changes", 0, Res(::fstat(fd, &st)));
    ExpectMode("fchmod(unlinked file, 0600): st_mode", S_IFREG | 0600, st.st_mode);
    ExpectValue("fchown(unlinked file, 1001, 1001): st_uid", kAlice.uid, st.st_uid);
    ExpectTime("futimens(unlinked file): mtime", t[1], st.st_mtim);
    ExpectValue("ftruncate(unlinked file, 2): st_size", 2, st.st_size);
    ::close(fd);
  }

  // Errors.
  Make(Kind::kDirectory, "dir");
  MakeFile("file", "");
  Must(Symlink("loop", "loop"));
  struct stat before = L(".");
  Tick();
  Expect(Unlink("dir"), EISDIR);
  Expect(Unlink("missing"), ENOENT);
  Expect(Unlink("file/x"), ENOTDIR);
  Expect(Unlink("file/"), ENOTDIR);
  Expect(Unlink(kLong), ENAMETOOLONG);
  Expect(Unlink("loop/x"), ELOOP);
  ExpectSameTime("failed unlinks: the directory's mtime", before.st_mtim, L(".").st_mtim);

  // Unprivileged: write and search permission on the directory, not on the file.
  Make(Kind::kDirectory, "ro", 0755);
  MakeFile("ro/f", "", 0666);
  Make(Kind::kDirectory, "closed", 0733);
  Own("closed", kBob.uid, kBob.gid);
  MakeFile("closed/f", "");
  Make(Kind::kDirectory, "nox", 0776);
  MakeFile("nox/f", "");
  Make(Kind::kDirectory, "rw", 0777);
  MakeFile("rw/f", "", 0000);
  ExpectAs(kAlice, {{Unlink("ro/f"), EACCES}, {Unlink("nox/f"), EACCES}, {Unlink("closed/f"), 0}, {Unlink("rw/f"), 0}});
}

// ---------------------------------------------------------------- utimensat

TEST(Conformance, Utimensat) {
  Scratch s("utimensat");
  const timespec kA{1000, 1}, kM{2000, 999999999};
  const timespec kNow{0, UTIME_NOW}, kOmit{0, UTIME_OMIT};
  MakeFile("f", "x");
  struct stat before = L("f");
  Tick();
  Expect(Utimens("f", std::make_pair(kA, kM)), 0);
  struct stat st = L("f");
  ExpectTime("utimensat(f, explicit): atime", kA, st.st_atim);
  ExpectTime("utimensat(f, explicit): mtime", kM, st.st_mtim);
  ExpectNewer("utimensat(f, explicit): ctime", before.st_ctim, st.st_ctim);

  // UTIME_OMIT keeps one; both omitted changes nothing at all.
  const timespec kA2{3000, 3}, kM2{4000, 4};
  Expect(Utimens("f", std::make_pair(kOmit, kM2)), 0);
  st = L("f");
  ExpectTime("utimensat(f, [UTIME_OMIT, explicit]): atime", kA, st.st_atim);
  ExpectTime("utimensat(f, [UTIME_OMIT, explicit]): mtime", kM2, st.st_mtim);
  Expect(Utimens("f", std::make_pair(kA2, kOmit)), 0);
  st = L("f");
  ExpectTime("utimensat(f, [explicit, UTIME_OMIT]): atime", kA2, st.st_atim);
  ExpectTime("utimensat(f, [explicit, UTIME_OMIT]): mtime", kM2, st.st_mtim);
  before = st;
  Tick();
  Expect(Utimens("f", std::make_pair(kOmit, kOmit)), 0);
  st = L("f");
  ExpectSameTime("utimensat(f, [UTIME_OMIT, UTIME_OMIT]): atime", before.st_atim, st.st_atim);
  ExpectSameTime("utimensat(f, [UTIME_OMIT, UTIME_OMIT]): mtime", before.st_mtim, st.st_mtim);
  ExpectSameTime("utimensat(f, [UTIME_OMIT, UTIME_OMIT]): ctime", before.st_ctim, st.st_ctim);

  // UTIME_NOW and NULL: the current time.
  timespec lower{};
  ::clock_gettime(CLOCK_REALTIME_COARSE, &lower);
  Expect(Utimens("f", std::make_pair(kNow, kNow)), 0);
  st = L("f");
  Check(Ns(st.st_atim) >= Ns(lower), "utimensat(f, [UTIME_NOW, UTIME_NOW]): atime is now",
        "atime " + ShowTime(st.st_atim) + " before " + ShowTime(lower));
  Check(Ns(st.st_mtim) >= Ns(lower), "utimensat(f, [UTIME_NOW, UTIME_NOW]): mtime is now",
        "mtime " + ShowTime(st.st_mtim) + " before " + ShowTime(lower));
  Expect(Utimens("f", std::make_pair(kA, kM)), 0);
  Expect(Utimens("f", std::make_pair(kNow, kOmit)), 0);
  st = L("f");
  Check(Ns(st.st_atim) >= Ns(lower), "utimensat(f, [UTIME_NOW, UTIME_OMIT]): atime is now",
        "atime " + ShowTime(st.st_atim));
  ExpectTime("utimensat(f, [UTIME_NOW, UTIME_OMIT]): mtime", kM, st.st_mtim);
  Expect(Utimens("f", std::make_pair(kA, kM)), 0);
  Expect(Utimens("f", std::nullopt), 0);
  st = L("f");
  Check(Ns(st.st_atim) >= Ns(lower), "utimensat(f, NULL): atime is now", "atime " + ShowTime(st.st_atim));
  Check(Ns(st.st_mtim) >= Ns(lower), "utimensat(f, NULL): mtime is now", "mtime " + ShowTime(st.st_mtim));

  // Times before 1970 and after 2038; directories; symlinks themselves.
  const timespec kOld{-100000, 5}, kFar{4102444800, 7};
  Expect(Utimens("f", std::make_pair(kOld, kFar)), 0);
  st = L("f");
  ExpectTime("utimensat(f, pre-1970 atime): atime", kOld, st.st_atim);
  ExpectTime("utimensat(f, 2100 mtime): mtime", kFar, st.st_mtim);
  Make(Kind::kDirectory, "dir");
  Expect(Utimens("dir", std::make_pair(kA, kM)), 0);
  ExpectTime("utimensat(dir, explicit): mtime", kM, L("dir").st_mtim);
  MakeFile("target", "x");
  Must(Symlink("target", "sym"));
  struct stat target_before = L("target");
  Expect(Utimens("sym", std::make_pair(kA, kM), AT_SYMLINK_NOFOLLOW), 0);
  ExpectTime("utimensat(AT_SYMLINK_NOFOLLOW, sym): the link's mtime", kM, L("sym").st_mtim);
  ExpectSameTime("utimensat(AT_SYMLINK_NOFOLLOW, sym): the target's mtime", target_before.st_mtim, L("target").st_mtim);
  Expect(Utimens("sym", std::make_pair(kA2, kM2)), 0);
  ExpectTime("utimensat(sym): the target's mtime", kM2, L("target").st_mtim);
  int fd = ::open("target", O_RDONLY);
  if (fd >= 0) {
    timespec t[2] = {kA, kM};
    ExpectErrno("futimens(target, explicit)", 0, Res(::futimens(fd, t)));
    ExpectTime("futimens(target, explicit): mtime", kM, L("target").st_mtim);
    ::close(fd);
  }

  // Errors.
  Must(Symlink("loop", "loop"));
  Expect(Utimens("f", std::make_pair(timespec{0, 1000000000}, kM)), EINVAL);
  Expect(Utimens("f", std::make_pair(kA, timespec{0, -1})), EINVAL);
  Expect(Utimens("missing", std::make_pair(kA, kM)), ENOENT);
  Expect(Utimens("f/x", std::make_pair(kA, kM)), ENOTDIR);
  Expect(Utimens(kLong, std::make_pair(kA, kM)), ENAMETOOLONG);
  Expect(Utimens("loop", std::make_pair(kA, kM)), ELOOP);

  // Unprivileged: setting both times to now (NULL, or UTIME_NOW twice)
  // needs ownership or write permission; anything else, even UTIME_NOW
  // with UTIME_OMIT, ownership. Omitting both asks nothing.
  MakeFile("rw", "x", 0666);
  MakeFile("ro", "x", 0644);
  MakeFile("mine", "x", 0444, kAlice.uid, kAlice.gid);
  Expect(Utimens("rw", std::make_pair(kA, kM)), 0);
  Expect(Utimens("ro", std::make_pair(kA, kM)), 0);
  before = L("ro");
  Tick();
  ExpectAs(kBob, {{Utimens("rw", std::make_pair(kNow, kNow)), 0},
                  {Utimens("rw", std::nullopt), 0},
                  {Utimens("rw", std::make_pair(kNow, kOmit)), EPERM},
                  {Utimens("rw", std::make_pair(kA, kM)), EPERM},
                  {Utimens("rw", std::make_pair(kA, kOmit)), EPERM},
                  {Utimens("rw", std::make_pair(kNow, kM)), EPERM},
                  {Utimens("ro", std::make_pair(kNow, kNow)), EACCES},
                  {Utimens("ro", std::nullopt), EACCES},
                  {Utimens("ro", std::make_pair(kA2, kM2)), EPERM},
                  {Utimens("ro", std::make_pair(kOmit, kOmit)), 0}});
  st = L("ro");
  ExpectTime("refused utimensat: mtime", kM, st.st_mtim);
  ExpectSameTime("refused utimensat: ctime", before.st_ctim, st.st_ctim);
  ExpectAs(kAlice, {{Utimens("mine", std::make_pair(kNow, kNow)), 0}, {Utimens("mine", std::make_pair(kA, kM)), 0}});
  ExpectTime(As(kAlice) + "utimensat(mine, explicit) on her read-only file: mtime", kM, L("mine").st_mtim);
}

// ---------------------------------------------------------------- extended attributes

TEST(Conformance, Xattr) {
  Scratch s("xattr");
  Make(Kind::kDirectory, "dir");
  MakeFile("file", "x");
  for (const char* p : {"file", "dir"}) {
    std::string path = p;
    ExpectValue("listxattr(" + path + ") of a new object: names", 0, static_cast<long long>(ListX(path).size()));
    struct stat before = L(path);
    Tick();
    Expect(Setxattr(path, "user.a", "v1"), 0);
    struct stat st = L(path);
    ExpectString("getxattr(" + path + ", user.a)", "v1", GetX(path, "user.a"));
    ExpectNewer("setxattr(" + path + ", user.a): ctime", before.st_ctim, st.st_ctim);
    ExpectSameTime("setxattr(" + path + ", user.a): mtime", before.st_mtim, st.st_mtim);
    ExpectValue("getxattr(" + path + ", user.a, size 0): the value's size", 2,
                ::getxattr(path.c_str(), "user.a", nullptr, 0));
    Expect(Getxattr(path, "user.a", 1), ERANGE);
    Expect(Setxattr(path, "user.a", "v2", XATTR_CREATE), EEXIST);
    ExpectString("setxattr(XATTR_CREATE) refused: value", "v1", GetX(path, "user.a"));
    Expect(Setxattr(path, "user.a", "v3", XATTR_REPLACE), 0);
    ExpectString("setxattr(XATTR_REPLACE): value", "v3", GetX(path, "user.a"));
    Expect(Setxattr(path, "user.b", "v", XATTR_REPLACE), ENODATA);
    Expect(Setxattr(path, "user.b", "", XATTR_CREATE), 0);
    ExpectString("setxattr(user.b, empty value): value", "", GetX(path, "user.b"));
    Expect(Setxattr(path, "user.bin", std::string("a\0b\0", 4)), 0);
    ExpectString("setxattr(user.bin, bytes with NULs): value", std::string("a\0b\0", 4), GetX(path, "user.bin"));
    ExpectValue("listxattr(" + path + ", size 0): the list's size", 23,
                ::listxattr(path.c_str(), nullptr, 0));  // "user.a\0user.b\0user.bin\0"
    Expect(Listxattr(path, 5), ERANGE);
    ExpectValue("listxattr(" + path + "): names", 1,
                ListX(path) == std::set<std::string>{"user.a", "user.b", "user.bin"});
    Expect(Getxattr(path, "user.none"), ENODATA);
    Expect(Removexattr(path, "user.none"), ENODATA);
    before = L(path);
    Tick();
    Expect(Removexattr(path, "user.b"), 0);
    ExpectNewer("removexattr(" + path + ", user.b): ctime", before.st_ctim, L(path).st_ctim);
    Expect(Getxattr(path, "user.b"), ENODATA);
    before = L(path);
    Tick();
    Expect(Setxattr(path, "user.a", "x", XATTR_CREATE), EEXIST);
    ExpectSameTime("failed setxattr (EEXIST): ctime", before.st_ctim, L(path).st_ctim);
  }

  // Names and sizes.
  std::string name255 = "user." + std::string(250, 'n');
  Expect(Setxattr("file", name255, "v"), 0);
  ExpectString("getxattr(file, 255-byte name)", "v", GetX("file", name255));
  Expect(Setxattr("file", name255 + "n", "v"), ERANGE);
  Expect(Getxattr("file", name255 + "n"), ERANGE);
  Expect(Setxattr("file", "", "v"), ERANGE);
  std::string big(3000, 'b');
  Expect(Setxattr("file", "user.big", big), 0);
  ExpectString("getxattr(file, user.big): 3000 bytes", big, GetX("file", "user.big"));
  Expect(Setxattr("file", "user.huge", std::string(65537, 'h')), E2BIG);
  Expect(Setxattr("file", "unknown.ns", "v"), EOPNOTSUPP);
  Expect(Getxattr("file", "unknown.ns"), EOPNOTSUPP);
  Expect(Setxattr("file", "user.", "v"), EINVAL);
  std::vector<std::string> many;
  for (int i = 0; i < 20; ++i) {
    many.push_back("user.many" + std::to_string(i));
    Must(Setxattr("file", many.back(), std::to_string(i)));
  }
  std::set<std::string> listed = ListX("file");
  ExpectValue("listxattr(file) after 20 more: all listed", 1,
              std::all_of(many.begin(), many.end(), [&](const std::string& n) { return listed.count(n) == 1; }));

  // Root's namespaces.
  Expect(Setxattr("file", "trusted.t", "tv"), 0);
  ExpectString("getxattr(file, trusted.t)", "tv", GetX("file", "trusted.t"));
  Expect(Setxattr("file", "security.s", "sv"), 0);
  ExpectString("getxattr(file, security.s)", "sv", GetX("file", "security.s"));

  // user.* only on regular files and directories; trusted.* anywhere.
  Must(Symlink("file", "sym"));
  Make(Kind::kFifo, "fifo");
  Make(Kind::kCharDev, "chr");
  Expect(Lsetxattr("sym", "user.a", "v"), EPERM);
  Expect(Lgetxattr("sym", "user.a"), ENODATA);
  Expect(Setxattr("fifo", "user.a", "v"), EPERM);
  Expect(Setxattr("chr", "user.a", "v"), EPERM);
  Expect(Lsetxattr("sym", "trusted.t", "v"), 0);
  ExpectString("lgetxattr(sym, trusted.t)", "v", GetX("sym", "trusted.t"));
  Expect(Setxattr("sym", "user.via-link", "v"), 0);
  ExpectString("setxattr(sym) follows the link: the target's value", "v", GetX("file", "user.via-link"));

  // Attributes belong to the inode: they follow renames and hard links and
  // die with it.
  MakeFile("x1", "x");
  Must(Setxattr("x1", "user.k", "kept"));
  Must(Rename("x1", "x2"));
  ExpectString("getxattr after rename", "kept", GetX("x2", "user.k"));
  Must(Link("x2", "x3"));
  Must(Setxattr("x3", "user.k2", "shared"));
  ExpectString("getxattr through the other hard link", "shared", GetX("x2", "user.k2"));
  Must(Unlink("x2"));
  Must(Unlink("x3"));
  MakeFile("x2", "x");
  ExpectValue("a new file under an old name: no attributes", 0, static_cast<long long>(ListX("x2").size()));
  int fd = ::open("x2", O_RDWR);
  if (fd >= 0) {
    ExpectErrno("fsetxattr(x2, user.fd)", 0, Res(::fsetxattr(fd, "user.fd", "fv", 2, 0)));
    char buf[8] = {};
    ExpectValue("fgetxattr(x2, user.fd)", 2, ::fgetxattr(fd, "user.fd", buf, sizeof buf));
    ExpectErrno("fremovexattr(x2, user.fd)", 0, Res(::fremovexattr(fd, "user.fd")));
    ExpectErrno("fgetxattr(x2, user.fd) after removing", ENODATA, Res(::fgetxattr(fd, "user.fd", buf, sizeof buf)));
    ::close(fd);
  }
  Expect(Getxattr("missing", "user.a"), ENOENT);
  Expect(Setxattr("missing", "user.a", "v"), ENOENT);
  Expect(Listxattr("missing"), ENOENT);

  // Unprivileged.
  MakeFile("ro", "x", 0644);
  MakeFile("rw", "x", 0666);
  MakeFile("private", "x", 0600);
  Must(Setxattr("ro", "user.a", "v"));
  Must(Setxattr("private", "user.a", "v"));
  Must(Setxattr("ro", "trusted.t", "v"));
  Make(Kind::kDirectory, "sticky", 01777);
  ExpectAs(kBob, {{Setxattr("ro", "user.b", "v"), EACCES},
                  {Removexattr("ro", "user.a"), EACCES},
                  {Getxattr("ro", "user.a"), 0},
                  {Getxattr("private", "user.a"), EACCES},
                  {Setxattr("rw", "user.b", "v"), 0},
                  {Setxattr("rw", "trusted.t", "v"), EPERM},
                  {Getxattr("ro", "trusted.t"), ENODATA},
                  {Removexattr("ro", "trusted.t"), EPERM},
                  {Setxattr("rw", "security.s", "v"), EPERM},
                  {Setxattr("sticky", "user.b", "v"), EPERM}});
  // Names of trusted.* attributes are not shown to unprivileged users.
  std::vector<std::string> names;
  {
    int fds[2];
    if (::pipe(fds) == 0) {
      pid_t pid = ::fork();
      if (pid == 0) {
        ::close(fds[0]);
        if (::setresgid(kBob.gid, kBob.gid, kBob.gid) != 0 || ::setresuid(kBob.uid, kBob.uid, kBob.uid) != 0)
          ::_exit(1);
        char buf[4096];
        ssize_t n = ::listxattr("ro", buf, sizeof buf);
        if (n > 0 && ::write(fds[1], buf, static_cast<size_t>(n)) != n) ::_exit(1);
        ::_exit(n < 0 ? 1 : 0);
      }
      ::close(fds[1]);
      std::string list;
      char buf[4096];
      ssize_t n;
      while ((n = ::read(fds[0], buf, sizeof buf)) > 0) list.append(buf, static_cast<size_t>(n));
      ::close(fds[0]);
      int status = 0;
      if (pid > 0) ::waitpid(pid, &status, 0);
      for (size_t i = 0; i < list.size(); i += std::strlen(list.c_str() + i) + 1) names.emplace_back(list.c_str() + i);
    }
  }
  std::string shown;
  for (const std::string& n : names) shown += n + " ";
  Check(names == std::vector<std::string>{"user.a"}, As(kBob) + "listxattr(ro)", "expected only user.a, got: " + shown);
}

// ---------------------------------------------------------------- names

// NAME_MAX (255) for every call that takes a name; PATH_MAX for a path.
TEST(Conformance, NameTooLong) {
  Scratch s("names");
  MakeFile("file", "x");
  Make(Kind::kDirectory, "dir");
  const std::string l = kLong;
  const std::vector<Op> kOps = {Open(l, O_CREAT | O_WRONLY),
                                Open(l, O_RDONLY),
                                Mkdir(l),
                                Mkfifo(l),
                                Mknod(l, S_IFSOCK | 0644),
                                Symlink("x", l),
                                Link("file", l),
                                Rename("file", l),
                                Rename(l, "x"),
                                Unlink(l),
                                Rmdir(l),
                                Stat(l),
                                Lstat(l),
                                Access(l, F_OK),
                                Chmod(l, 0644),
                                Chown(l, 1, 1),
                                Lchown(l, 1, 1),
                                Truncate(l, 0),
                                Utimens(l, std::nullopt),
                                Setxattr(l, "user.a", "v"),
                                Getxattr(l, "user.a"),
                                Listxattr(l),
                                Readlink(l),
                                Opendir(l),
                                Stat("dir/" + l + "/x"),
                                Open("dir/" + l + "/x", O_CREAT | O_WRONLY)};
  for (const Op& op : kOps) Expect(op, ENAMETOOLONG);
  const std::string m = kMax;
  Expect(Open(m, O_CREAT | O_WRONLY), 0);
  Expect(Stat(m), 0);
  Expect(Link(m, "dir/" + m), 0);
  Expect(Rename(m, "dir/moved"), 0);
  Expect(Symlink("x", "dir/s" + m.substr(1)), 0);
  Expect(Mkdir("dir/d" + m.substr(1)), 0);
  Expect(Open("dir/d" + m.substr(1) + "/" + m, O_CREAT | O_WRONLY), 0);
  ExpectValue("readdir(dir): a 255-byte name is listed", 1, ReadDir("dir").count(m));
  // A path of PATH_MAX bytes or more is refused before any lookup.
  std::string deep;
  while (deep.size() < 4096) deep += "dir/";
  Expect(Stat(deep + "file"), ENAMETOOLONG);
  struct statvfs vfs {};
  ExpectErrno("statvfs(.)", 0, Res(::statvfs(".", &vfs)));
  ExpectValue("statvfs(.): f_namemax", 255, vfs.f_namemax);
}

// ---------------------------------------------------------------- readdir

TEST(Conformance, Readdir) {
  Scratch s("readdir");
  Make(Kind::kDirectory, "d");
  for (const KindInfo& k : kKinds) Make(k.kind, std::string("d/") + k.name);
  auto listed = ReadDir("d");
  ExpectValue("readdir(d): entries", 7, static_cast<long long>(listed.size()));
  for (const KindInfo& k : kKinds) {
    auto it = listed.find(k.name);
    if (!Check(it != listed.end(), std::string("readdir(d): ") + k.name, "not listed")) continue;
    ExpectValue(std::string("readdir(d): d_type of ") + k.name, k.dtype, it->second);
  }
  ExpectValue("stat(d): st_nlink counts the subdirectory", 3, L("d").st_nlink);
  Must(Unlink("d/regular"));
  Must(Rename("d/fifo", "d/fifo2"));
  listed = ReadDir("d");
  ExpectValue("readdir(d) after unlink: regular is gone", 0, listed.count("regular"));
  ExpectValue("readdir(d) after rename: the new name", 1, listed.count("fifo2"));
  ExpectValue("readdir(d) after rename: the old name is gone", 0, listed.count("fifo"));
  // A large directory lists every name once.
  Make(Kind::kDirectory, "big");
  for (int i = 0; i < 300; ++i) Must(Mknod("big/entry-with-a-longish-name-" + std::to_string(i), S_IFREG | 0644));
  ExpectValue("readdir(big): 300 entries", 300, static_cast<long long>(ReadDir("big").size()));
}

// ---------------------------------------------------------------- read-only

// Every change in a read-only tree is EROFS; reads work. The tree holds f
// ("data", user.a), d/g, e (empty), l -> f.
//
// access(W_OK) gives EROFS only where the kernel knows the mount is
// read-only (-o ro). Inside .snapshots of a writable mount it succeeds: with
// default_permissions the kernel answers access() from the mode bits
// without asking QCFS, and the views keep the modes the files had. Opening
// for writing then fails with EROFS. (A known difference from btrfs's
// read-only snapshots, documented in docs/reliability.md.)
void ExpectReadOnly(const std::string& label, bool kernel_knows_read_only) {
  const int access_w = kernel_knows_read_only ? EROFS : 0;
  const timespec kT{1000, 0};
  std::vector<std::pair<Op, int>> cases = {
      {Open("f", O_WRONLY), EROFS},
      {Open("f", O_RDWR), EROFS},
      {Open("f", O_WRONLY | O_APPEND), EROFS},
      {Open("f", O_RDONLY | O_TRUNC), EROFS},
      {Open("f", O_CREAT | O_WRONLY), EROFS},
      {Open("d/g", O_WRONLY), EROFS},
      {Open("new", O_CREAT | O_WRONLY), EROFS},
      {Open("new", O_CREAT | O_RDONLY), EROFS},
      {Mkdir("new"), EROFS},
      {Mkdir("d"), EEXIST},
      {Mkfifo("new"), EROFS},
      {Mknod("new", S_IFSOCK | 0644), EROFS},
      {Mknod("new", S_IFCHR | 0644, makedev(1, 3)), EROFS},
      {Symlink("x", "new"), EROFS},
      {Link("f", "new"), EROFS},
      {Rename("f", "new"), EROFS},
      {Rename("f", "d/g"), EROFS},
      {Rename("f", "d", RENAME_EXCHANGE), EROFS},
      {Unlink("f"), EROFS},
      {Unlink("l"), EROFS},
      {Rmdir("e"), EROFS},
      {Chmod("f", 0600), EROFS},
      {Chmod("d", 0700), EROFS},
      {Chown("f", 1, 1), EROFS},
      {Lchown("l", 1, 1), EROFS},
      {Truncate("f", 0), EROFS},
      {Utimens("f", std::nullopt), EROFS},
      {Utimens("f", std::make_pair(kT, kT)), EROFS},
      {Setxattr("f", "user.b", "v"), EROFS},
      {Setxattr("f", "user.a", "v", XATTR_REPLACE), EROFS},
      {Removexattr("f", "user.a"), EROFS},
      {Access("f", W_OK), access_w},
      {Access("d", W_OK), access_w},
      {Open("f", O_RDONLY), 0},
      {Opendir("d"), 0},
      {Stat("f"), 0},
      {Getxattr("f", "user.a"), 0},
      {Listxattr("f"), 0},
      {Readlink("l"), 0},
      {Access("f", R_OK), 0},
  };
  for (auto& [op, expected] : cases) ExpectErrno(label + op.what, expected, op.run());
  ExpectString(label + "f's content afterwards", "data", Contents("f"));
  ExpectString(label + "f's user.a afterwards", "v", GetX("f", "user.a"));
  ExpectValue(label + "d/g afterwards", 1, Exists("d/g"));
}

void MakeReadOnlyTree(const std::string& dir) {
  auto p = [&](const char* rel) { return dir + "/" + rel; };
  MakeFile(p("f"), "data");
  Must(Setxattr(p("f"), "user.a", "v"));
  Make(Kind::kDirectory, p("d"));
  MakeFile(p("d/g"), "g");
  Make(Kind::kDirectory, p("e"));
  Must(Symlink("f", p("l")));
}

// Enters a directory for the rest of the scope.
class Chdir {
 public:
  explicit Chdir(const std::string& dir) { ok_ = ::chdir(dir.c_str()) == 0; }
  ~Chdir() { LeaveDir(); }
  bool ok() const { return ok_; }

 private:
  bool ok_;
};

TEST(Conformance, ReadOnlyMount) {
  if (!OnQcfs()) GTEST_SKIP() << "a read-only mount needs QCFS";
  Scratch s("ro-mount");  // counts the checks
  MountedVolume v(MountedVolume::Options{.mount_args = "-o allow_other"});
  MakeReadOnlyTree(v.mnt());
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto m = v.Qcfs("mount " + v.image() + " " + v.mnt() + " -o ro,allow_other");
  ASSERT_EQ(m.exit_code, 0) << m.output;
  {
    Chdir in(v.mnt());
    ASSERT_TRUE(in.ok());
    ExpectReadOnly("on a -o ro mount: ", true);
  }
  auto u = v.Qcfs("umount " + v.mnt());
  EXPECT_EQ(u.exit_code, 0) << u.output;
}

TEST(Conformance, SnapshotsAreReadOnly) {
  if (!OnQcfs()) GTEST_SKIP() << "snapshots need QCFS";
  Scratch s("snapshot");
  MakeReadOnlyTree(".");
  MountedVolume* v = Target::Get().volume();
  const std::string name = "conformance-" + std::to_string(::getpid());
  auto r = v->Qcfs("snapshot create " + v->mnt() + " " + name);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The live tree moves on; the snapshot keeps what it saw.
  MakeFile("f", "changed");
  const std::string snap = v->mnt() + "/.snapshots/" + name;
  ExpectString("the snapshot's f after the live f changed", "data", Contents(snap + "/" + s.rel() + "/f"));
  {
    Chdir in(snap + "/" + s.rel());
    ASSERT_TRUE(in.ok());
    ExpectReadOnly("in .snapshots/" + name + ": ", false);
  }
  // The snapshot directories themselves.
  Expect(Mkdir(v->mnt() + "/.snapshots/new"), EROFS);
  Expect(Rename(snap, v->mnt() + "/.snapshots/renamed"), EROFS);
  Expect(Rename(s.path() + "/f", snap + "/f"), EROFS);
  Expect(Link(s.path() + "/f", snap + "/f2"), EROFS);
  Expect(Mkdir(snap + "/new"), EROFS);
}

// ---------------------------------------------------------------- persistence

// What a remount must keep of an object: everything stat shows but atime,
// the symlink target, the extended attributes and a regular file's content.
std::string Describe(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return "<" + ErrName(errno) + ">";
  std::string d = "mode " + Oct(st.st_mode) + " uid " + std::to_string(st.st_uid) + " gid " +
                  std::to_string(st.st_gid) + " nlink " + std::to_string(st.st_nlink) + " size " +
                  std::to_string(st.st_size) + " mtime " + ShowTime(st.st_mtim) + " ctime " + ShowTime(st.st_ctim);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    d += " rdev " + std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev));
  }
  if (S_ISLNK(st.st_mode)) d += " target " + std::to_string(std::hash<std::string>()(ReadLink(path)));
  if (S_ISREG(st.st_mode)) d += " content " + std::to_string(std::hash<std::string>()(Contents(path)));
  for (const std::string& name : ListX(path)) d += " xattr " + name + "=" + GetX(path, name);
  return d;
}

// Every object below `dir`, by path relative to it.
void DescribeTree(const std::string& dir, const std::string& rel, std::map<std::string, std::string>* out) {
  for (const auto& [name, type] : ReadDir(dir)) {
    std::string path = dir + "/" + name, r = rel.empty() ? name : rel + "/" + name;
    (*out)[r] = Describe(path);
    if (type == DT_DIR) DescribeTree(path, r, out);
  }
}

// The attributes the calls above set are the volume's, not only the
// kernel's cached copies: after a remount (which drops every cache) each
// object of this test, and of every test that ran before it in this
// process, reads back the same.
TEST(Conformance, AttributesSurviveRemount) {
  if (!OnQcfs()) GTEST_SKIP() << "a remount needs QCFS";
  Scratch s("remount");
  const timespec kA{1000, 1}, kM{2000, 999999999}, kOld{-100000, 5};
  MakeFile("data", "some content", 0640, kAlice.uid, kStaff);
  Must(Setxattr("data", "user.a", "va"));
  Must(Setxattr("data", "trusted.t", "vt"));
  Must(Utimens("data", std::make_pair(kA, kM)));
  Must(Link("data", "data-link"));
  MakeFile("renamed-from", "moved");
  Must(Rename("renamed-from", "renamed-to"));
  MakeFile("x", "X");
  MakeFile("y", "Y");
  Must(Rename("x", "y", RENAME_EXCHANGE));
  Make(Kind::kFifo, "fifo", 0600);
  Must(Mknod("chr", S_IFCHR | 0640, makedev(4095, 1048575)));
  Must(Mknod("blk", S_IFBLK | 0640, makedev(7, 3)));
  Make(Kind::kSocket, "socket");
  Must(Symlink(std::string(4095, 't'), "long-link"));
  Must(Lchown("long-link", kBob.uid, kBob.gid));
  Make(Kind::kDirectory, "dir", 03775);
  Own("dir", kCarol.uid, kStaff);
  Must(Chmod("dir", 03775));
  Make(Kind::kDirectory, "dir/sub");
  Make(Kind::kDirectory, "dir/gone");
  Must(Rmdir("dir/gone"));
  MakeFile("sparse", "head");
  Must(Truncate("sparse", 100000));
  MakeFile("setid", "x", 06755);
  MakeFile("cleared", "x", 06777);
  ExpectAs(kAlice, {{Write("cleared", "y"), 0}});
  MakeFile("old", "x");
  Must(Utimens("old", std::make_pair(kOld, kOld)));

  std::map<std::string, std::string> own_before, all_before, own_after, all_after;
  DescribeTree(".", "", &own_before);
  DescribeTree(Target::Get().run_dir(), "", &all_before);
  MountedVolume* v = Target::Get().volume();
  LeaveDir();
  auto u = v->Unmount();
  ASSERT_EQ(u.exit_code, 0) << u.output;
  auto m = v->Mount();
  ASSERT_EQ(m.exit_code, 0) << m.output;
  ASSERT_EQ(::chdir(s.path().c_str()), 0);
  DescribeTree(".", "", &own_after);
  DescribeTree(Target::Get().run_dir(), "", &all_after);

  for (const auto& [path, before] : own_before) {
    auto it = own_after.find(path);
    ExpectString("after a remount: " + path, before, it == own_after.end() ? "<missing>" : it->second);
  }
  ExpectValue("after a remount: objects of this test", static_cast<long long>(own_before.size()),
              static_cast<long long>(own_after.size()));
  std::string differ;
  int differing = 0;
  for (const auto& [path, before] : all_before) {
    auto it = all_after.find(path);
    std::string after = it == all_after.end() ? "<missing>" : it->second;
    if (after == before) continue;
    if (++differing <= 10) differ += "\n  " + Show(path) + ":\n    before " + before + "\n    after  " + after;
  }
  for (const auto& [path, after] : all_after) {
    if (all_before.count(path) == 0 && ++differing <= 10) differ += "\n  " + Show(path) + ": appeared";
  }
  Check(differing == 0, "after a remount: all " + std::to_string(all_before.size()) + " objects the tests made",
        std::to_string(differing) + " differ:" + differ);
}

}  // namespace
}  // namespace qcfs
