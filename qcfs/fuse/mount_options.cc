#include "qcfs/fuse/mount_options.h"

#include <unistd.h>

#include <algorithm>

#include "qcfs/core/units.h"

namespace qcfs {
namespace {

std::vector<std::string> SplitCommas(const std::string& list) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : list) {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// Options mount(8) uses that the kernel must also see.
const char* const kKernelFlags[] = {"dev", "nodev", "suid", "nosuid", "exec", "noexec", "sync", "async",
                                    "dirsync", "nodiratime", "diratime", "lazytime", "nolazytime"};
// Options that only mean something to mount(8), fstab or systemd.
const char* const kIgnored[] = {"auto", "noauto", "nofail", "_netdev", "user", "nouser", "users", "owner",
                                "defaults", "group", "noiversion", "iversion", "loud", "silent"};

}  // namespace

const char* MountOptionsHelp() {
  return "Mount options (-o, comma-separated):\n"
         "  ro, rw                   read-only or read-write (default rw)\n"
         "  noatime, relatime,       when reads update the access time\n"
         "  strictatime                (default relatime)\n"
         "  allow_other              every user may use the mount, the kernel checking\n"
         "                             permissions and POSIX ACLs (default when root\n"
         "                             mounts)\n"
         "  private                  only the mount's owner may use it (default when\n"
         "                             another user mounts)\n"
         "  default_permissions      kernel permission checks on a private mount too\n"
         "                             (on anyway where others may enter or the owner\n"
         "                             is not root)\n"
         "  compression=ALG          for new writes: lz4, zstd[:LEVEL], none\n"
         "  cache_size=SIZE          buffered write data (default 256M)\n"
         "  flush_interval=SECONDS   oldest buffered data is flushed after this (default 5)\n"
         "  discard, nodiscard       return freed space to the device (default discard)\n"
         "  writeback_cache,         buffer writes in the kernel's page cache (default;\n"
         "  no_writeback_cache         fsync still means durable)\n"
         "  dirty_limit=adaptive|system|fuse\n"
         "                           dirty page limit: a tenth of the system's while\n"
         "                             writes stream, all of it for random writes\n"
         "                             (adaptive, default); the system's vm.dirty_*\n"
         "                             settings; or the kernel's strict FUSE default\n"
         "  readahead=SIZE           read-ahead of sequential reads (default 1M;\n"
         "                             0 keeps the kernel's 128K)\n"
         "  snapdir=hidden|visible   list .snapshots in the root (default hidden;\n"
         "                             it is always reachable by name)\n"
         "  dev, nodev, suid, nosuid, exec, noexec, sync, async: as mount(8)\n"
         "  auto, noauto, nofail, _netdev, user, defaults, x-*: accepted for fstab\n";
}

bool AllowsOthers(const MountConfig& config) { return config.allow_other.value_or(::geteuid() == 0); }

bool KernelChecksPermissions(const MountConfig& config) {
  return config.default_permissions || AllowsOthers(config) || ::geteuid() != 0;
}

Status ParseMountOptions(const std::vector<std::string>& lists, MountConfig* config) {
  for (const std::string& list : lists) {
    for (const std::string& opt : SplitCommas(list)) {
      auto eq = opt.find('=');
      std::string key = opt.substr(0, eq);
      std::string value = eq == std::string::npos ? "" : opt.substr(eq + 1);
      auto need_value = [&]() -> Status {
        if (eq == std::string::npos || value.empty()) return Status::Errorf(EINVAL, "mount option '{}' needs a value", key);
        return Status::Ok();
      };
      if (key == "ro") {
        config->volume.read_only = true;
      } else if (key == "rw") {
        config->volume.read_only = false;
      } else if (key == "noatime") {
        config->volume.atime = AtimeMode::kNoatime;
        config->fuse_options.push_back("noatime");
      } else if (key == "relatime" || key == "atime" || key == "norelatime" || key == "nostrictatime") {
        config->volume.atime = AtimeMode::kRelatime;
      } else if (key == "strictatime") {
        config->volume.atime = AtimeMode::kStrictatime;
      } else if (key == "allow_other") {
        config->allow_other = true;
      } else if (key == "private") {
        config->allow_other = false;
      } else if (key == "default_permissions") {
        config->default_permissions = true;
      } else if (key == "compression") {
        QCFS_RETURN_IF_ERROR(need_value());
        auto spec = CompressionSpec::Parse(value);
        if (!spec.ok()) return spec.status();
        config->volume.compression = *spec;
      } else if (key == "cache_size") {
        QCFS_RETURN_IF_ERROR(need_value());
        auto size = ParseSize(value);
        if (!size.ok()) return size.status().WithContext("cache_size");
        if (*size < (16u << 20)) return Status::Error(EINVAL, "cache_size must be at least 16M");
        config->volume.cache_bytes = *size;
      } else if (key == "flush_interval") {
        QCFS_RETURN_IF_ERROR(need_value());
        int seconds = std::atoi(value.c_str());
        if (seconds < 1 || seconds > 600) return Status::Error(EINVAL, "flush_interval must be 1..600 seconds");
        config->volume.flush_interval_ms = static_cast<uint32_t>(seconds) * 1000;
      } else if (key == "discard") {
        config->volume.store.discard = true;
      } else if (key == "nodiscard") {
        config->volume.store.discard = false;
      } else if (key == "writeback_cache") {
        config->writeback_cache = true;
      } else if (key == "no_writeback_cache") {
        config->writeback_cache = false;
      } else if (key == "dirty_limit") {
        if (value == "adaptive") config->dirty_limit = MountConfig::DirtyLimit::kAdaptive;
        else if (value == "system") config->dirty_limit = MountConfig::DirtyLimit::kSystem;
        else if (value == "fuse") config->dirty_limit = MountConfig::DirtyLimit::kFuse;
        else return Status::Error(EINVAL, "dirty_limit must be adaptive, system or fuse");
      } else if (key == "readahead") {
        QCFS_RETURN_IF_ERROR(need_value());
        auto size = ParseSize(value);
        if (!size.ok()) return size.status().WithContext("readahead");
        if (*size > (64u << 20)) return Status::Error(EINVAL, "readahead must be at most 64M");
        config->readahead_bytes = *size;
      } else if (key == "snapdir") {
        if (value != "visible" && value != "hidden") return Status::Error(EINVAL, "snapdir must be visible or hidden");
        config->volume.snapdir_visible = value == "visible";
      } else if (std::find(std::begin(kKernelFlags), std::end(kKernelFlags), key) != std::end(kKernelFlags)) {
        config->fuse_options.push_back(key);
      } else if (std::find(std::begin(kIgnored), std::end(kIgnored), key) != std::end(kIgnored) ||
                 key.starts_with("x-") || key == "comment") {
        // for mount(8) and fstab only
      } else {
        return Status::Errorf(EINVAL, "unknown mount option '{}' (see qcfs mount --help)", opt);
      }
    }
  }
  return Status::Ok();
}

}  // namespace qcfs
