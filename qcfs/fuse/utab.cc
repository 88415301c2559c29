#include "qcfs/fuse/utab.h"

#include <libmount/libmount.h>
#include <unistd.h>

#include <cstring>

#include "qcfs/core/log.h"

namespace qcfs {
namespace {

// Runs one utab update: an entry for `fs` (add), or none for `target`.
void Update(libmnt_fs* fs, const char* target) {
  libmnt_update* upd = mnt_new_update();
  if (upd == nullptr) return;
  int rc = mnt_update_set_fs(upd, 0, target, fs);
  if (rc == 0) rc = mnt_update_table(upd, nullptr);
  if (rc < 0) Log(LogLevel::kDebug, "utab update for {}: {}", target ? target : "a mount", std::strerror(-rc));
  mnt_free_update(upd);
}

}  // namespace

void RecordInUtab(const std::string& device, const std::string& mountpoint) {
  if (::geteuid() != 0) return;
  libmnt_fs* fs = mnt_new_fs();
  if (fs == nullptr) return;
  mnt_fs_set_source(fs, device.c_str());
  mnt_fs_set_target(fs, mountpoint.c_str());
  mnt_fs_set_root(fs, "/");
  mnt_fs_set_fstype(fs, "fuse.qcfs");
  // utab keeps only userspace options; one is what makes the entry exist.
  mnt_fs_append_options(fs, "x-qcfs");
  Update(fs, nullptr);
  mnt_unref_fs(fs);
}

void ForgetInUtab(const std::string& mountpoint) {
  if (::geteuid() != 0) return;
  Update(nullptr, mountpoint.c_str());
}

}  // namespace qcfs
