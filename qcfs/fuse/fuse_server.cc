#define FUSE_USE_VERSION 312
#include "qcfs/fuse/fuse_server.h"

#include <fuse3/fuse_lowlevel.h>
#include <dirent.h>
#include <linux/fuse.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <exception>
#include <vector>

#include "qcfs/core/log.h"
#include "qcfs/core/units.h"
#include "qcfs/fs/internal/time.h"

namespace qcfs {
namespace {

FuseServer* Server(fuse_req_t req) { return static_cast<FuseServer*>(fuse_req_userdata(req)); }
Volume* Vol(fuse_req_t req) { return Server(req)->volume(); }

void ReplyStatus(fuse_req_t req, const Status& s) {
  int err = s.ok() ? 0 : s.code();
  if (err < 0 || err > 4095) err = EIO;
  if (err != 0 && err != ENOENT && err != EEXIST && err != ENODATA && err != ENOTEMPTY && LogEnabled(LogLevel::kDebug)) {
    Log(LogLevel::kDebug, "request failed: {}", s.ToString());
  }
  if (err == EIO || err == EUCLEAN || err == ENOSPC) Log(LogLevel::kWarning, "{}", s.ToString());
  fuse_reply_err(req, err);
}

// Runs an operation body; an escaping exception becomes EIO.
template <typename Fn>
void Guard(fuse_req_t req, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    Log(LogLevel::kError, "internal error in a FUSE request: {}", e.what());
    fuse_reply_err(req, EIO);
  } catch (...) {
    Log(LogLevel::kError, "internal error in a FUSE request");
    fuse_reply_err(req, EIO);
  }
}

fuse_entry_param Entry(fuse_req_t req, const Attr& a) {
  const MountConfig& c = Server(req)->config();
  fuse_entry_param e{};
  e.ino = a.ino;
  e.generation = Server(req)->Generation(a.ino);
  e.attr = a.ToStat();
  e.attr_timeout = Server(req)->AttrTimeout(a.mode);
  e.entry_timeout = c.entry_timeout;
  return e;
}

void ReplyEntry(fuse_req_t req, const Result<Attr>& a) {
  if (!a.ok()) {
    if (a.status().code() == ENOENT) {
      // Negative entry: cache "no such name" too; creations invalidate it.
      fuse_entry_param e{};
      e.entry_timeout = Server(req)->config().entry_timeout;
      fuse_reply_entry(req, &e);
      return;
    }
    return ReplyStatus(req, a.status());
  }
  fuse_entry_param e = Entry(req, *a);
  fuse_reply_entry(req, &e);
}

void ReplyAttr(fuse_req_t req, const Result<Attr>& a) {
  if (!a.ok()) return ReplyStatus(req, a.status());
  struct stat st = a->ToStat();
  fuse_reply_attr(req, &st, Server(req)->AttrTimeout(a->mode));
}

// The umask is the creating process's for mknod, mkdir and create (with
// FUSE_CAP_DONT_MASK not yet applied to the mode), 0 for other requests.
Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  return Caller{ctx->uid, ctx->gid, {}, static_cast<uint32_t>(ctx->umask)};
}

// Per-open-file state kept in fi->fh.
// Both kinds of handle start with their kind: a GETATTR names a handle
// without saying which kind it is.
enum class HandleKind : uint32_t { kFile = 0x46494c45, kDir = 0x44495220 };

struct FileHandle {
  HandleKind kind = HandleKind::kFile;
  bool append = false;
  bool writable = false;
};

FileHandle* NewHandle(uint32_t flags) {
  return new FileHandle{HandleKind::kFile, (flags & O_APPEND) != 0, (flags & O_ACCMODE) != O_RDONLY};
}

// Per-open-directory cursor kept in fi->fh: readdir resumes after the last
// name it returned instead of counting entries from the start.
struct DirHandle {
  HandleKind kind = HandleKind::kDir;
  std::mutex mu;
  off_t last_off = 0;     // offset given to the last entry returned
  std::string last_name;  // and its name
};

std::vector<char>& ThreadBuffer(size_t size) {
  thread_local std::vector<char> buf;
  if (buf.size() < size) buf.resize(size);
  return buf;
}

// Marks a FUSE_WRITE whose writer lacks CAP_FSETID (the kernel's
// FUSE_WRITE_KILL_SUIDGID) in the open flags libfuse hands to OpWrite: no
// open flag uses the top bit.
constexpr uint32_t kKillSetIdMark = 1u << 31;
constexpr int kTimeBits = FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                          FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;

bool InGroupOrRoot(fuse_req_t req, uint32_t gid) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  if (ctx->uid == 0 || ctx->gid == gid) return true;
  gid_t groups[64];
  int n = fuse_req_getgroups(req, 64, groups);
  for (int i = 0; i < std::min(n, 64); ++i) {
    if (groups[i] == gid) return true;
  }
  return false;
}

// Clears the set-ID bits of a file after a write or truncate, or of any
// inode but a directory after a chown (FIFOs, sockets and devices too, as
// on ext4), by the request's caller, as Linux does: set-user-ID always,
// set-group-ID when group execute is set or the caller is neither in the
// file's group nor root. With FUSE_HANDLE_KILLPRIV_V2 the kernel leaves
// this to us and says when (`kill`); without it the kernel clears the
// other cases itself and only a non-member's write to a set-group-ID file
// without group execute is left to us.
void KillSetIdBits(fuse_req_t req, uint64_t ino, bool kill) {
  const bool v2 = Server(req)->kills_privileges();
  if (v2 ? !kill : fuse_req_ctx(req)->uid == 0) return;
  auto a = Vol(req)->GetAttr(ino);
  if (!a.ok() || S_ISDIR(a->mode) || (a->mode & (S_ISUID | S_ISGID)) == 0) return;
  uint32_t mode = a->mode;
  if (v2) mode &= ~S_ISUID;
  if ((mode & S_ISGID) && ((v2 && (mode & S_IXGRP)) || !InGroupOrRoot(req, a->gid))) mode &= ~S_ISGID;
  if (mode == a->mode) return;
  SetAttrRequest r;
  r.mode = mode & 07777;
  if (Server(req)->writeback_cache()) r.ctime_ns = a->ctime_ns;  // the kernel's to set
  auto changed = Vol(req)->SetAttr(ino, r);
  if (changed.ok()) Server(req)->InvalidateAttr(ino);
}

// ---------------------------------------------------------------- ops

void OpInit(void* userdata, fuse_conn_info* conn) { static_cast<FuseServer*>(userdata)->Negotiate(conn); }

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, [&] { ReplyEntry(req, Vol(req)->Lookup(parent, name)); });
}

void OpForget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }
void OpForgetMulti(fuse_req_t req, size_t, fuse_forget_data*) { fuse_reply_none(req); }

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, [&] {
    // With a writable handle, on a nearly full volume: the kernel is about
    // to take a write(2) into its cache (or a read past the end it knows).
    auto* h = fi != nullptr ? reinterpret_cast<FileHandle*>(fi->fh) : nullptr;
    if (h != nullptr && h->kind == HandleKind::kFile && h->writable && !Server(req)->AdmitCachedWrite()) {
      return ReplyStatus(req, Status::Error(ENOSPC, "no space left on volume for more cached writes"));
    }
    ReplyAttr(req, Vol(req)->GetAttr(ino));
  });
}

void OpSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  Guard(req, [&] {
    SetAttrRequest r;
    if (to_set & FUSE_SET_ATTR_MODE) r.mode = attr->st_mode;
    if (to_set & FUSE_SET_ATTR_UID) r.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) r.gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_SIZE) r.size = static_cast<uint64_t>(attr->st_size);
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) r.atime_ns = SetAttrRequest::kNow;
    else if (to_set & FUSE_SET_ATTR_ATIME) r.atime_ns = internal::FromTimespec(attr->st_atim);
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) r.mtime_ns = SetAttrRequest::kNow;
    else if (to_set & FUSE_SET_ATTR_MTIME) r.mtime_ns = internal::FromTimespec(attr->st_mtim);
    if (to_set & FUSE_SET_ATTR_CTIME) r.ctime_ns = internal::FromTimespec(attr->st_ctim);
    auto a = Vol(req)->SetAttr(ino, r);
    if (!a.ok() && a.status().code() == ENOENT && (to_set & ~kTimeBits) == 0 && Server(req)->writeback_cache()) {
      // The kernel writes back the times of a regular file it is about to
      // forget, after its last name went: there is nothing left to update.
      struct stat st {};
      st.st_ino = ino;
      st.st_mode = S_IFREG;
      fuse_reply_attr(req, &st, 0);
      return;
    }
    // FATTR_KILL_SUIDGID (libfuse calls the bit FUSE_SET_ATTR_KILL_SUID):
    // a truncate or chown that must clear set-ID bits. chown(f, -1, -1)
    // must too, but the kernel sends it as a bare ctime update.
    const bool kill = (to_set & FATTR_KILL_SUIDGID) || to_set == FUSE_SET_ATTR_CTIME;
    if (a.ok() && kill && Server(req)->kills_privileges()) {
      KillSetIdBits(req, ino, true);
      a = Vol(req)->GetAttr(ino);
    }
    ReplyAttr(req, a);
  });
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  Guard(req, [&] {
    auto target = Vol(req)->Readlink(ino);
    if (!target.ok()) return ReplyStatus(req, target.status());
    fuse_reply_readlink(req, target->c_str());
  });
}

void OpMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  Guard(req, [&] { ReplyEntry(req, Vol(req)->Mknod(parent, name, mode, rdev, CallerOf(req))); });
}

void OpMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  Guard(req, [&] { ReplyEntry(req, Vol(req)->Mkdir(parent, name, mode, CallerOf(req))); });
}

void OpUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, [&] { ReplyStatus(req, Vol(req)->Unlink(parent, name)); });
}

void OpRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, [&] { ReplyStatus(req, Vol(req)->Rmdir(parent, name)); });
}

void OpSymlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  Guard(req, [&] { ReplyEntry(req, Vol(req)->Symlink(parent, name, link, CallerOf(req))); });
}

void OpRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent, const char* newname,
              unsigned int flags) {
  Guard(req, [&] { ReplyStatus(req, Vol(req)->Rename(parent, name, newparent, newname, flags)); });
}

void OpLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  Guard(req, [&] { ReplyEntry(req, Vol(req)->Link(ino, newparent, newname)); });
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, [&] {
    auto a = Vol(req)->Open(ino, fi->flags);
    if (!a.ok()) return ReplyStatus(req, a.status());
    auto* h = NewHandle(fi->flags);
    fi->fh = reinterpret_cast<uint64_t>(h);
    if (h->writable) Server(req)->OpenedForWriting(ino, 1);
    fi->keep_cache = 1;  // we are the only writer: cached pages stay valid
    fi->noflush = 0;
    if (fuse_reply_open(req, fi) != 0) {  // the opener went away
      Vol(req)->Release(ino).IgnoreError();
      if (h->writable) Server(req)->OpenedForWriting(ino, -1);
      delete h;
    }
  });
}

void OpCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  Guard(req, [&] {
    auto a = Vol(req)->Create(parent, name, mode, fi->flags, CallerOf(req));
    if (!a.ok()) return ReplyStatus(req, a.status());
    auto* h = NewHandle(fi->flags);
    fi->fh = reinterpret_cast<uint64_t>(h);
    if (h->writable) Server(req)->OpenedForWriting(a->ino, 1);
    fi->keep_cache = 1;
    fuse_entry_param e = Entry(req, *a);
    if (fuse_reply_create(req, &e, fi) != 0) {
      Vol(req)->Release(a->ino).IgnoreError();
      if (h->writable) Server(req)->OpenedForWriting(a->ino, -1);
      delete h;
    }
  });
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  Guard(req, [&] {
    std::vector<char>& buf = ThreadBuffer(size);
    auto n = Vol(req)->Read(ino, static_cast<uint64_t>(off),
                            std::span<std::byte>(reinterpret_cast<std::byte*>(buf.data()), size));
    if (!n.ok()) return ReplyStatus(req, n.status());
    fuse_reply_buf(req, buf.data(), *n);
  });
}

void OpWrite(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off, fuse_file_info* fi) {
  Guard(req, [&] {
    if (const auto& observe = Server(req)->write_observer()) observe(size);
    auto* h = reinterpret_cast<FileHandle*>(fi->fh);
    // O_APPEND writes go to the end; a page written back from mmap carries
    // its own offset, whatever handle the kernel sends it through. With the
    // writeback cache the kernel places every write itself.
    const bool append = h != nullptr && h->append && fi->writepage == 0 && !Server(req)->writeback_cache();
    // With the writeback cache the kernel keeps mtime and ctime and sends
    // them in a SETATTR of its own, which may arrive before this write.
    auto n = Vol(req)->Write(ino, static_cast<uint64_t>(off),
                             std::span<const std::byte>(reinterpret_cast<const std::byte*>(data), size), append,
                             Server(req)->writeback_cache());
    if (!n.ok() && n.status().code() == ENOENT && fi->writepage) {
      // Cached pages of a file deleted meanwhile: they have nowhere to go.
      return (void)fuse_reply_write(req, size);
    }
    if (!n.ok()) return ReplyStatus(req, n.status());
    KillSetIdBits(req, ino, (static_cast<uint32_t>(fi->flags) & kKillSetIdMark) != 0);
    fuse_reply_write(req, *n);
  });
}

void OpFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  Guard(req, [&] {
    // With the writeback cache the kernel writes a file's pages back at
    // close and reports their errors itself; an earlier flush's error stays
    // for fsync to report, and the last close queues the file anyway. So
    // FLUSH is a round trip per close() for nothing: ENOSYS turns it off.
    if (Server(req)->writeback_cache()) return ReplyStatus(req, Status::Error(ENOSYS, "flush is not needed"));
    ReplyStatus(req, Vol(req)->FlushHandle(ino));
  });
}

void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, [&] {
    auto* h = reinterpret_cast<FileHandle*>(fi->fh);
    if (h != nullptr && h->writable) Server(req)->OpenedForWriting(ino, -1);
    delete h;
    fi->fh = 0;
    ReplyStatus(req, Vol(req)->Release(ino));
  });
}

void OpFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  Guard(req, [&] { ReplyStatus(req, Vol(req)->Fsync(ino, datasync != 0)); });
}

// access(2) and chdir(2), asked only where the kernel does not check
// permissions itself (then the caller is the mount's owner, root): the mode
// bits as the kernel would read them, and EROFS for writing in a snapshot.
void OpAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  Guard(req, [&] {
    auto a = Vol(req)->GetAttr(ino);
    if (!a.ok()) return ReplyStatus(req, a.status());
    if ((mask & W_OK) && (Vol(req)->read_only() || ino >= kLiveInoLimit)) {
      return ReplyStatus(req, Status::Error(EROFS, "read-only file system"));
    }
    const fuse_ctx* ctx = fuse_req_ctx(req);
    uint32_t granted;
    if (ctx->uid == 0) {
      // Root reads and writes anything; it executes what someone may execute.
      granted = R_OK | W_OK | ((S_ISDIR(a->mode) || (a->mode & 0111)) ? X_OK : 0);
    } else if (ctx->uid == a->uid) {
      granted = (a->mode >> 6) & 7;
    } else if (InGroupOrRoot(req, a->gid)) {
      granted = (a->mode >> 3) & 7;
    } else {
      granted = a->mode & 7;
    }
    const uint32_t wanted = static_cast<uint32_t>(mask) & (R_OK | W_OK | X_OK);
    if ((wanted & ~granted) != 0) return ReplyStatus(req, Status::Error(EACCES, "permission denied"));
    fuse_reply_err(req, 0);
  });
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Guard(req, [&] {
    // Counted as open: a directory removed while open stays until closed
    // (fstat shows nlink 0, readdir nothing).
    auto a = Vol(req)->Open(ino, O_RDONLY);
    if (!a.ok()) return ReplyStatus(req, a.status());
    if (!S_ISDIR(a->mode)) {
      Vol(req)->Release(ino).IgnoreError();
      return ReplyStatus(req, Status::Error(ENOTDIR, "not a directory"));
    }
    auto* h = new DirHandle;
    fi->fh = reinterpret_cast<uint64_t>(h);
    fi->cache_readdir = 0;
    if (fuse_reply_open(req, fi) != 0) {
      delete h;
      Vol(req)->Release(ino).IgnoreError();
    }
  });
}

// Fills one readdir reply into `buf` (returns the bytes used), or fails.
// Offsets: 1 is ".", 2 is "..", entries from 3 on.
Result<size_t> FillDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, DirHandle* h, bool plus,
                       std::vector<char>& buf) {
  Volume* v = Vol(req);
  size_t used = 0;
  auto add = [&](const char* name, const Attr& attr, off_t next) -> bool {
    size_t room = size - used;
    size_t n;
    if (plus) {
      fuse_entry_param e = Entry(req, attr);
      n = fuse_add_direntry_plus(req, buf.data() + used, room, name, &e, next);
    } else {
      struct stat st {};
      st.st_ino = attr.ino;
      st.st_mode = attr.mode;
      n = fuse_add_direntry(req, buf.data() + used, room, name, &st, next);
    }
    if (n > room) return false;
    used += n;
    return true;
  };
  if (off < 1) {
    QCFS_ASSIGN_OR_RETURN(Attr self, v->GetAttr(ino));
    if (!add(".", self, 1)) return used;
    off = 1;
  }
  if (off < 2) {
    QCFS_ASSIGN_OR_RETURN(Attr parent, v->Lookup(ino, ".."));
    if (!add("..", parent, 2)) return used;
    off = 2;
  }
  std::string after;
  if (off > 2 && off != h->last_off) {
    // A seek to an offset we did not just return: count from the start.
    off_t skip = off - 2;
    QCFS_RETURN_IF_ERROR(v->ReadDir(ino, "", [&](const DirEntry& e) {
      after = e.name;
      return --skip > 0;
    }));
  } else if (off > 2) {
    after = h->last_name;
  }
  off_t next = off + 1;
  Status s = v->ReadDir(ino, after, [&](const DirEntry& e) {
    Attr attr;
    if (plus) {
      auto a = v->GetAttr(e.ino);
      if (!a.ok()) return true;  // removed meanwhile: skip it
      attr = *a;
    } else {
      attr.ino = e.ino;
      attr.mode = static_cast<uint32_t>(DTTOIF(e.type));
    }
    if (!add(e.name.c_str(), attr, next)) return false;
    h->last_name = e.name;
    h->last_off = next;
    ++next;
    return true;
  });
  if (!s.ok() && used == 0) return s;
  return used;
}

void ReadDirCommon(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi, bool plus) {
  Guard(req, [&] {
    auto* h = reinterpret_cast<DirHandle*>(fi->fh);
    std::vector<char>& buf = ThreadBuffer(size);
    Result<size_t> used = size_t{0};
    {
      std::lock_guard lock(h->mu);
      used = FillDir(req, ino, size, off, h, plus, buf);
    }
    // Reply only after the handle is no longer touched: once the kernel
    // has the answer, releasedir may free it.
    if (!used.ok()) return ReplyStatus(req, used.status());
    fuse_reply_buf(req, buf.data(), *used);
  });
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDirCommon(req, ino, size, off, fi, false);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  ReadDirCommon(req, ino, size, off, fi, true);
}

void OpReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  Guard(req, [&] { ReplyStatus(req, Vol(req)->Release(ino)); });
}

void OpFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info*) {
  Guard(req, [&] { ReplyStatus(req, Vol(req)->Fsync(ino, datasync != 0)); });
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  Guard(req, [&] {
    auto st = Vol(req)->StatFs();
    if (!st.ok()) return ReplyStatus(req, st.status());
    fuse_reply_statfs(req, &*st);
  });
}

// trusted.* attributes are for privileged processes only (CAP_SYS_ADMIN;
// here: root), as on ext4: others cannot read, write or list them.
bool Untrusted(fuse_req_t req, std::string_view name) {
  return name.starts_with("trusted.") && fuse_req_ctx(req)->uid != 0;
}

void OpSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size, int flags) {
  Guard(req, [&] {
    if (Untrusted(req, name)) return ReplyStatus(req, Status::Error(EPERM, "trusted attributes need privilege"));
    Caller caller = CallerOf(req);
    if (std::string_view(name) == "system.posix_acl_access" && caller.uid != 0) {
      // Whether the caller may keep a set-group-ID bit depends on its groups.
      std::vector<gid_t> groups(64);
      int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
      if (n > static_cast<int>(groups.size())) {
        groups.resize(n);
        n = fuse_req_getgroups(req, n, groups.data());
      }
      groups.resize(std::clamp(n, 0, static_cast<int>(groups.size())));
      caller.groups.assign(groups.begin(), groups.end());
    }
    ReplyStatus(req, Vol(req)->SetXattr(ino, name, std::string_view(value, size), flags, caller));
  });
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guard(req, [&] {
    if (Untrusted(req, name)) return ReplyStatus(req, Status::Error(EPERM, "trusted attributes need privilege"));
    auto value = Vol(req)->GetXattr(ino, name);
    if (!value.ok()) return ReplyStatus(req, value.status());
    if (size == 0) return (void)fuse_reply_xattr(req, value->size());
    if (size < value->size()) return ReplyStatus(req, Status::Error(ERANGE, "buffer too small"));
    fuse_reply_buf(req, value->data(), value->size());
  });
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guard(req, [&] {
    auto names = Vol(req)->ListXattr(ino);
    if (!names.ok()) return ReplyStatus(req, names.status());
    std::string list;
    for (const std::string& n : *names) {
      if (Untrusted(req, n)) continue;
      list += n;
      list.push_back('\0');
    }
    if (size == 0) return (void)fuse_reply_xattr(req, list.size());
    if (size < list.size()) return ReplyStatus(req, Status::Error(ERANGE, "buffer too small"));
    fuse_reply_buf(req, list.data(), list.size());
  });
}

void OpRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Guard(req, [&] {
    if (Untrusted(req, name)) return ReplyStatus(req, Status::Error(EPERM, "trusted attributes need privilege"));
    ReplyStatus(req, Vol(req)->RemoveXattr(ino, name));
  });
}

void OpFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, fuse_file_info*) {
  Guard(req, [&] {
    if (offset < 0 || length <= 0) return ReplyStatus(req, Status::Error(EINVAL, "invalid range"));
    ReplyStatus(req, Vol(req)->Fallocate(ino, mode, static_cast<uint64_t>(offset), static_cast<uint64_t>(length)));
  });
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.setattr = OpSetattr;
  ops.readlink = OpReadlink;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.unlink = OpUnlink;
  ops.rmdir = OpRmdir;
  ops.symlink = OpSymlink;
  ops.rename = OpRename;
  ops.link = OpLink;
  ops.open = OpOpen;
  ops.create = OpCreate;
  ops.read = OpRead;
  ops.write = OpWrite;
  ops.flush = OpFlush;
  ops.release = OpRelease;
  ops.fsync = OpFsync;
  ops.access = OpAccess;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.releasedir = OpReleasedir;
  ops.fsyncdir = OpFsyncdir;
  ops.statfs = OpStatfs;
  ops.setxattr = OpSetxattr;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.removexattr = OpRemovexattr;
  ops.fallocate = OpFallocate;
  return ops;
}

}  // namespace

Result<std::unique_ptr<FuseServer>> FuseServer::Mount(Volume* volume, const std::string& device,
                                                      const std::string& mountpoint, const MountConfig& config) {
  std::unique_ptr<FuseServer> server(new FuseServer(volume, config));
  // MountConfig::default_permissions: needed where others may enter.
  server->kernel_permissions_ = KernelChecksPermissions(config);
  std::string opts = "fsname=" + device + ",subtype=qcfs";
  if (server->kernel_permissions_) opts += ",default_permissions";
  if (AllowsOthers(config)) opts += ",allow_other";
  if (config.volume.read_only) opts += ",ro";
  for (const std::string& o : config.fuse_options) opts += "," + o;
  std::vector<std::string> argv_s = {"qcfs", "-o", opts};
  if (config.debug) argv_s.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  static const fuse_lowlevel_ops kOps = MakeOps();
  server->session_ = fuse_session_new(&args, &kOps, sizeof kOps, server.get());
  fuse_opt_free_args(&args);
  if (server->session_ == nullptr) return Status::Error(EINVAL, "cannot create the FUSE session (bad options?)");
  if (fuse_session_mount(server->session_, mountpoint.c_str()) != 0) {
    return Status::Errorf(EIO, "cannot mount on {} (is /dev/fuse available and the mountpoint usable?)", mountpoint);
  }
  server->mounted_ = true;
  fuse_custom_io io{};
  io.read = &FuseServer::ReadRequest;
  io.writev = &FuseServer::WriteReply;
  if (int rc = fuse_session_custom_io(server->session_, &io, fuse_session_fd(server->session_)); rc != 0) {
    return Status::Errorf(-rc, "cannot set up the FUSE session's I/O: {}", std::strerror(-rc));
  }
  server->inval_thread_ = std::thread([s = server.get()] { s->InvalidationLoop(); });
  return server;
}

void FuseServer::Negotiate(fuse_conn_info* conn) {
  if (conn->capable & FUSE_CAP_EXPORT_SUPPORT) conn->want |= FUSE_CAP_EXPORT_SUPPORT;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO;
  // The umask comes with each create (Caller::umask) for the volume to
  // apply, since a directory's default ACL replaces it.
  if (conn->capable & FUSE_CAP_DONT_MASK) conn->want |= FUSE_CAP_DONT_MASK;
  // Where the kernel checks permissions it also checks POSIX ACLs, read
  // from system.posix_acl_access and cached; the volume keeps ACL and mode
  // consistent (inheritance, chmod, setting an ACL). A private root mount
  // does without: only root enters it.
  if (kernel_permissions_ && (conn->capable & FUSE_CAP_POSIX_ACL)) conn->want |= FUSE_CAP_POSIX_ACL;
  // Clearing set-ID bits ourselves (answered in WriteReply) is what makes
  // the writeback cache both correct and fast: the kernel then neither
  // asks for security.capability before every write nor decides on
  // set-group-ID without the writer's groups.
  killpriv_ = (kernel_flags_.load() & FUSE_HANDLE_KILLPRIV_V2) != 0;
  const bool writeback = config_.writeback_cache && killpriv_ && (conn->capable & FUSE_CAP_WRITEBACK_CACHE) != 0;
  if (writeback) conn->want |= FUSE_CAP_WRITEBACK_CACHE;
  else conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
  writeback_cache_ = writeback;
  // Before INIT is answered, and so before the first write can arrive, the
  // guard looks at the room (its knobs are sysfs files, not this mount).
  SpaceTick();
  conn->max_write = 1 << 20;
  conn->max_read = 0;
  // The kernel lowers the mount's read-ahead to this when INIT is answered,
  // which may come after the daemon has raised it (MountConfig::readahead_bytes).
  conn->max_readahead = config_.readahead_bytes > 0 ? static_cast<unsigned>(config_.readahead_bytes) : 1u << 20;
  // Written-back pages in flight to the daemon. More only contend for the
  // two cores and the buffer limit: 64 made the daemon spend half again as
  // much CPU per GiB in a sequential drain.
  conn->max_background = 16;
  conn->congestion_threshold = 12;
  conn->time_gran = 1;
}

ssize_t FuseServer::ReadRequest(int fd, void* buf, size_t size, void* self) {
  auto* server = static_cast<FuseServer*>(self);
  const ssize_t n = ::read(fd, buf, size);
  if (n < static_cast<ssize_t>(sizeof(fuse_in_header))) return n;
  auto* in = static_cast<fuse_in_header*>(buf);
  const size_t body = static_cast<size_t>(n) - sizeof(fuse_in_header);
  if (in->opcode == FUSE_INIT && body >= offsetof(fuse_init_in, flags) + sizeof(uint32_t)) {
    fuse_init_in init{};
    std::memcpy(&init, in + 1, std::min(body, sizeof init));
    server->kernel_flags_ = init.flags;
    server->init_unique_ = in->unique;
  } else if (in->opcode == FUSE_WRITE && body >= sizeof(fuse_write_in)) {
    auto* w = reinterpret_cast<fuse_write_in*>(in + 1);
    if (w->write_flags & FUSE_WRITE_KILL_SUIDGID) w->flags |= kKillSetIdMark;
  }
  return n;
}

ssize_t FuseServer::WriteReply(int fd, struct iovec* iov, int count, void* self) {
  auto* server = static_cast<FuseServer*>(self);
  const uint64_t init = server->init_unique_.load();
  if (init != 0 && count >= 2 && iov[0].iov_len >= sizeof(fuse_out_header) &&
      iov[1].iov_len >= offsetof(fuse_init_out, flags) + sizeof(uint32_t)) {
    auto* out = static_cast<fuse_out_header*>(iov[0].iov_base);
    if (out->unique == init && out->error == 0) {
      if (server->killpriv_) static_cast<fuse_init_out*>(iov[1].iov_base)->flags |= FUSE_HANDLE_KILLPRIV_V2;
      server->init_unique_ = 0;
    }
  }
  return ::writev(fd, iov, count);
}

void FuseServer::ReplaceInode(uint64_t ino) {
  if (ino == FUSE_ROOT_ID) return;  // a root with a new generation would be marked bad
  std::lock_guard lock(generation_mu_);
  generations_[ino] = next_generation_++;
  any_replaced_ = true;
}

uint64_t FuseServer::Generation(uint64_t ino) {
  if (!any_replaced_.load(std::memory_order_acquire)) return 1;  // every reply: no lock until a restore
  std::lock_guard lock(generation_mu_);
  auto it = generations_.find(ino);
  return it == generations_.end() ? 1 : it->second;
}

FuseServer::~FuseServer() {
  {
    std::lock_guard lock(inval_mu_);
    inval_stop_ = true;
  }
  inval_cv_.notify_all();
  inval_done_cv_.notify_all();
  if (inval_thread_.joinable()) inval_thread_.join();
  Unmount();
  if (signals_installed_) fuse_remove_signal_handlers(session_);
  if (session_ != nullptr) fuse_session_destroy(session_);
}

// Request threads. Idle ones are kept (up to the maximum): libfuse ends a
// thread beyond its idle limit when a burst is over, and the next burst's
// new threads each map and fault in a fresh 1 MiB request buffer, which
// cost a third of the daemon's CPU in a sequential drain.
constexpr int kMaxThreads = 32;

Status FuseServer::Run() {
  if (fuse_set_signal_handlers(session_) != 0) return Status::Error(EIO, "cannot install signal handlers");
  signals_installed_ = true;
  fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_loop_cfg_set_idle_threads(cfg, kMaxThreads);
  fuse_loop_cfg_set_max_threads(cfg, kMaxThreads);
  int rc = fuse_session_loop_mt(session_, cfg);
  fuse_loop_cfg_destroy(cfg);
  // rc > 0 is the signal that ended the loop; that is a clean shutdown.
  if (rc < 0) return Status::Errorf(-rc, "FUSE loop failed: {}", std::strerror(-rc));
  return Status::Ok();
}

void FuseServer::Unmount() {
  if (mounted_ && session_ != nullptr) {
    fuse_session_unmount(session_);
    mounted_ = false;
  }
}

void FuseServer::InvalidateAttr(uint64_t ino) { Queue({Invalidation::Kind::kAttr, ino, {}}); }
void FuseServer::InvalidateInode(uint64_t ino) { Queue({Invalidation::Kind::kInode, ino, {}}); }
void FuseServer::InvalidateEntry(uint64_t parent, const std::string& name) {
  Queue({Invalidation::Kind::kEntry, parent, name});
}

void FuseServer::Queue(Invalidation inval) {
  {
    std::lock_guard lock(inval_mu_);
    // Past this the kernel's copies just expire with their timeouts.
    if (inval_queue_.size() > 1000000) return;
    inval_queue_.push_back(std::move(inval));
    ++inval_queued_;
  }
  inval_cv_.notify_one();
}

void FuseServer::WaitForInvalidations() {
  std::unique_lock lock(inval_mu_);
  const uint64_t target = inval_queued_;
  inval_done_cv_.wait(lock, [&] { return inval_stop_ || inval_done_ >= target; });
}

double FuseServer::AttrTimeout(uint32_t mode) const {
  return S_ISREG(mode) && space_guard_.gated() ? 0.0 : config_.attr_timeout;
}

bool FuseServer::AdmitCachedWrite() {
  for (int ticks = 0;; ++ticks) {
    const SpaceGuard::Verdict v = space_guard_.Admit(volume_->AvailableBytes());
    if (v != SpaceGuard::Verdict::kWait) return v == SpaceGuard::Verdict::kAdmit;
    if (ticks == 2) return true;  // what the kernel held beyond the cap has had two ticks to drain
    std::unique_lock lock(inval_mu_);
    const uint64_t seen = space_ticks_;
    inval_done_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return inval_stop_ || space_ticks_ != seen; });
    if (inval_stop_) return true;
  }
}

void FuseServer::OpenedForWriting(uint64_t ino, int delta) {
  std::lock_guard lock(writers_mu_);
  int& n = open_writers_[ino];
  n += delta;
  if (n <= 0) open_writers_.erase(ino);
}

void FuseServer::SpaceTick() {
  std::lock_guard one_at_a_time(space_mu_);
  if (!writeback_cache_.load() || volume_->read_only()) return;
  uint64_t threshold = 0, dirty = 0;
  {
    std::ifstream in("/proc/vmstat");
    std::string name;
    uint64_t value = 0;
    while (in >> name >> value) {
      if (name == "nr_dirty" || name == "nr_writeback") dirty += value;
      else if (name == "nr_dirty_threshold") threshold = value;
    }
  }
  if (threshold == 0) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint32_t share = dirty_share_ ? std::clamp<uint32_t>(dirty_share_(), 1, 100) : 100;
  const uint64_t limit = threshold * page / 100 * share;
  SpaceGuard::Change c = space_guard_.Tick(volume_->AvailableBytes(), limit, dirty * page);
  if (dirty_cap_handler_ && (c.recap || c.uncap)) dirty_cap_handler_(space_guard_.cap());
  if (c.gated) {
    Log(LogLevel::kInfo, "volume nearly full: the kernel may cache at most {} of writes, and write(2) fails with "
        "ENOSPC once the rest would not fit", FormatSize(space_guard_.cap()));
    std::vector<uint64_t> writers;
    {
      std::lock_guard lock(writers_mu_);
      for (auto& [ino, n] : open_writers_) writers.push_back(ino);
    }
    // Their cached attributes would let writes skip the check.
    for (uint64_t ino : writers) InvalidateAttr(ino);
  }
}

void FuseServer::InvalidationLoop() {
  // Between invalidations, and at least every 250 ms, the space guard's tick.
  constexpr auto kTick = std::chrono::milliseconds(250);
  auto next_tick = std::chrono::steady_clock::now();
  std::unique_lock lock(inval_mu_);
  for (;;) {
    inval_cv_.wait_until(lock, next_tick, [&] { return inval_stop_ || !inval_queue_.empty(); });
    if (inval_stop_) return;
    if (std::chrono::steady_clock::now() >= next_tick) {
      lock.unlock();
      SpaceTick();
      lock.lock();
      ++space_ticks_;
      inval_done_cv_.notify_all();
      next_tick = std::chrono::steady_clock::now() + kTick;
      continue;
    }
    Invalidation inval = std::move(inval_queue_.front());
    inval_queue_.pop_front();
    lock.unlock();
    switch (inval.kind) {
      case Invalidation::Kind::kAttr:  // attributes only (negative offset): cached pages stay valid
        fuse_lowlevel_notify_inval_inode(session_, inval.ino, -1, 0);
        break;
      case Invalidation::Kind::kInode:
        fuse_lowlevel_notify_inval_inode(session_, inval.ino, 0, 0);
        break;
      case Invalidation::Kind::kEntry:
        fuse_lowlevel_notify_inval_entry(session_, inval.ino, inval.name.c_str(), inval.name.size());
        break;
    }
    lock.lock();
    ++inval_done_;
    inval_done_cv_.notify_all();
  }
}

}  // namespace qcfs
