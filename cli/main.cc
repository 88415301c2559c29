// qcfs: the command-line tool. Each subcommand parses its arguments and
// calls one library function; this file only renders results.
//
// Exit codes: 0 success; 1 findings (check) or failure; 2 usage errors.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "cli/benchmark.h"
#include "qcfs/check/check.h"
#include "qcfs/control/control.h"
#include "qcfs/control/volume_service.h"
#include "qcfs/core/log.h"
#include "qcfs/core/units.h"
#include "qcfs/core/version.h"
#include "qcfs/fs/volume.h"
#include "qcfs/fuse/daemon.h"
#include "qcfs/fuse/mount_options.h"

namespace qcfs {
namespace {

int Fail(const Status& s) {
  fmt::print(stderr, "qcfs: {}\n", s.ToString());
  return 1;
}

std::string Thousands(uint64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

// ---------------------------------------------------------------- mkfs

int RunMkfs(const std::string& device, const std::string& size, const std::string& chunk,
            const std::string& compression, bool force) {
  MkfsOptions o;
  o.force = force;
  if (!size.empty()) {
    auto s = ParseSize(size);
    if (!s.ok()) return Fail(s.status().WithContext("--size"));
    o.size = *s;
  }
  auto c = ParseSize(chunk);
  if (!c.ok()) return Fail(c.status().WithContext("--chunk-size"));
  o.chunk_size = static_cast<uint32_t>(*c);
  auto comp = CompressionSpec::Parse(compression);
  if (!comp.ok()) return Fail(comp.status());
  o.compression = *comp;
  Status s = Mkfs(device, o);
  if (!s.ok()) return Fail(s);
  VolumeOptions vo;
  vo.read_only = true;
  auto v = Volume::Open(device, vo);
  if (!v.ok()) return Fail(v.status());
  auto info = (*v)->Info();
  fmt::print("Created QCFS volume on {}\n", device);
  fmt::print("  UUID         {}\n", info->uuid);
  fmt::print("  Capacity     {} ({} segments of {})\n", FormatSize(info->usage.capacity_bytes),
             Thousands(info->usage.segment_count), FormatSize(info->usage.segment_size));
  fmt::print("  Chunk size   {}\n", FormatSize(info->chunk_size));
  fmt::print("  Compression  {}\n", info->compression);
  fmt::print("  Metadata     on the device\n");
  return 0;
}

// ---------------------------------------------------------------- volume requests

// Runs a control request on a volume: through its daemon when it is mounted
// (TARGET is the mountpoint or the device), on the device itself otherwise.
Result<nlohmann::json> VolumeRequest(const std::string& target, const nlohmann::json& request, bool writable,
                                     std::string* mountpoint = nullptr) {
  if (std::optional<MountRecord> rec = FindMount(target)) {
    if (mountpoint) *mountpoint = rec->mountpoint;
    // Writes the kernel still buffers belong in a snapshot, a sync and the
    // figures, and must not land in a tree a restore has just replaced.
    static const std::set<std::string> kSees = {"snapshot-create", "snapshot-restore", "sync", "info"};
    if (kSees.count(request.value("op", ""))) QCFS_RETURN_IF_ERROR(SyncMount(rec->mountpoint));
    return ControlCall(rec->socket, request);
  }
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return Status::Errorf(EINVAL, "{} is not a mounted QCFS volume", target);
  }
  VolumeOptions vo;
  vo.read_only = !writable;
  auto v = Volume::Open(target, vo);
  if (!v.ok()) return v.status();
  nlohmann::json answer = ServeVolumeRequest(v->get(), request);
  Status closed = (*v)->Close();
  if (answer.contains("error")) return Status::Error(answer.value("errno", EIO), answer["error"].get<std::string>());
  if (!closed.ok()) return closed;
  return answer;
}

std::string FormatTime(int64_t ns) {
  time_t t = static_cast<time_t>(ns / 1000000000);
  struct tm tm {};
  ::localtime_r(&t, &tm);
  char buf[32];
  ::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

// ---------------------------------------------------------------- snapshot

int RunSnapshot(const std::string& action, const std::string& target, const std::vector<std::string>& names,
                bool json, bool chunks) {
  auto need = [&](size_t n) -> Status {
    if (names.size() < n) return Status::Errorf(EINVAL, "qcfs snapshot {} needs a snapshot name", action);
    return Status::Ok();
  };
  auto start = std::chrono::steady_clock::now();
  auto ms = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  if (action == "create") {
    if (Status s = need(1); !s.ok()) return Fail(s);
    auto r = VolumeRequest(target, {{"op", "snapshot-create"}, {"name", names[0]}}, true);
    if (!r.ok()) return Fail(r.status());
    if (json) fmt::print("{}\n", r->dump(2));
    else fmt::print("Created snapshot '{}' ({:.0f} ms)\n", names[0], ms());
    return 0;
  }
  if (action == "list") {
    auto r = VolumeRequest(target, {{"op", "snapshot-list"}, {"exclusive", true}}, false);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      fmt::print("{}\n", r->dump(2));
      return 0;
    }
    const auto& list = (*r)["snapshots"];
    if (list.empty()) {
      fmt::print("No snapshots.\n");
      return 0;
    }
    size_t width = 4;
    for (const auto& s : list) width = std::max(width, s.value("name", "").size());
    fmt::print("{:<{}}  {:<19}  {:>10}  {:>10}\n", "NAME", width, "CREATED", "REFERENCED", "ONLY HERE");
    for (const auto& s : list) {
      fmt::print("{:<{}}  {:<19}  {:>10}  {:>10}\n", s.value("name", ""), width,
                 FormatTime(s.value("created_ns", int64_t{0})), FormatSize(s.value("logical_bytes", uint64_t{0})),
                 FormatSize(s.value("exclusive_bytes", uint64_t{0})));
    }
    return 0;
  }
  if (action == "delete") {
    if (Status s = need(1); !s.ok()) return Fail(s);
    auto r = VolumeRequest(target, {{"op", "snapshot-delete"}, {"name", names[0]}}, true);
    if (!r.ok()) return Fail(r.status());
    if (json) fmt::print("{}\n", r->dump(2));
    else fmt::print("Deleted snapshot '{}' ({:.0f} ms)\n", names[0], ms());
    return 0;
  }
  if (action == "restore") {
    if (Status s = need(1); !s.ok()) return Fail(s);
    auto r = VolumeRequest(target, {{"op", "snapshot-restore"}, {"name", names[0]}}, true);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      fmt::print("{}\n", r->dump(2));
    } else {
      fmt::print("Restored snapshot '{}' ({:.0f} ms). The tree as it was before is in snapshot '{}'.\n", names[0],
                 ms(), r->value("saved_as", ""));
    }
    return 0;
  }
  if (action == "diff") {
    if (Status s = need(1); !s.ok()) return Fail(s);
    std::string to = names.size() > 1 ? names[1] : "";
    auto r = VolumeRequest(target, {{"op", "snapshot-diff"}, {"from", names[0]}, {"to", to}, {"chunks", chunks}},
                           false);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      fmt::print("{}\n", r->dump(2));
      return 0;
    }
    for (const auto& c : (*r)["changes"]) {
      std::string kind = c.value("kind", "");
      std::string mark = kind == "added" ? "+" : kind == "deleted" ? "-" : kind == "renamed" ? "R" : "M";
      std::string line = kind == "renamed" ? fmt::format("{}  {} -> {}", mark, c.value("old_path", ""), c.value("path", ""))
                                           : fmt::format("{}  {}", mark, c.value("path", ""));
      if (chunks && c.contains("ranges")) {
        for (const auto& range : c["ranges"]) line += fmt::format("  [{}, {})", range[0].get<uint64_t>(), range[1].get<uint64_t>());
      }
      fmt::print("{}\n", line);
    }
    return 0;
  }
  return Fail(Status::Errorf(EINVAL, "unknown snapshot action '{}': create, list, diff, restore or delete", action));
}

// ---------------------------------------------------------------- info

void PrintInfo(const nlohmann::json& j) {
  auto u = [&](const char* k) { return j.value(k, uint64_t{0}); };
  fmt::print("Used {}, Stored {}, Compression {:.2f}x, Dedup {:.2f}x\n", FormatSize(u("stored_bytes")),
             FormatSize(u("logical_bytes")), j.value("compression_ratio", 1.0), j.value("dedup_ratio", 1.0));
  fmt::print("\n");
  fmt::print("  Volume        {}\n", j.value("device", ""));
  if (j.contains("mountpoint")) fmt::print("  Mounted at    {}\n", j.value("mountpoint", ""));
  fmt::print("  UUID          {}\n", j.value("uuid", ""));
  fmt::print("  Capacity      {}, {} free\n", FormatSize(u("capacity_bytes")), FormatSize(u("free_bytes")));
  fmt::print("  Logical data  {} in {} files and directories\n", FormatSize(u("logical_bytes")),
             Thousands(u("files")));
  if (u("snapshots") > 0) {
    fmt::print("  Snapshots     {}, holding {} the live tree no longer has\n", Thousands(u("snapshots")),
               FormatSize(u("snapshot_only_bytes")));
  }
  fmt::print("  Unique data   {} after dedup ({:.2f}x)\n", FormatSize(u("unique_bytes")), j.value("dedup_ratio", 1.0));
  fmt::print("  Stored        {} after compression ({:.2f}x)\n", FormatSize(u("stored_bytes")),
             j.value("compression_ratio", 1.0));
  fmt::print("  Reduction     {:.2f}x overall\n", j.value("data_reduction", 1.0));
  fmt::print("  Chunks        {} of {}, {}\n", Thousands(u("chunks")), FormatSize(u("chunk_size")),
             j.value("compression", ""));
  const auto& seg = j["segments"];
  fmt::print("  Segments      {} used, {} free of {} ({} each)\n", Thousands(seg.value("used", uint64_t{0})),
             Thousands(seg.value("free", uint64_t{0}) + seg.value("pending_free", uint64_t{0})),
             Thousands(seg.value("total", uint64_t{0})), FormatSize(seg.value("size", uint64_t{0})));
  fmt::print("  Metadata      {} in {} segments\n", FormatSize(u("metadata_bytes")),
             Thousands(u("metadata_segments")));
  if (u("buffered_bytes") > 0) fmt::print("  Buffered      {} not yet flushed\n", FormatSize(u("buffered_bytes")));
}

int RunInfo(const std::string& target, bool json) {
  std::string mountpoint;
  auto r = VolumeRequest(target, {{"op", "info"}}, false, &mountpoint);
  if (!r.ok()) return Fail(r.status());
  nlohmann::json j = *r;
  if (!mountpoint.empty()) j["mountpoint"] = mountpoint;
  if (json) {
    fmt::print("{}\n", j.dump(2));
  } else {
    PrintInfo(j);
  }
  return 0;
}

// ---------------------------------------------------------------- sync

// What sync(1) is on a kernel file system: everything written before it,
// in the kernel's cache and in the daemon, durable. sync(1) and syncfs(2)
// cannot do it on a FUSE mount (the README says why).
int RunSync(const std::string& mountpoint) {
  if (!FindMount(mountpoint)) {
    return Fail(Status::Errorf(EINVAL, "{} is not a mounted QCFS volume (an unmounted one holds nothing unwritten)",
                               mountpoint));
  }
  auto r = VolumeRequest(mountpoint, {{"op", "sync"}}, true);
  if (!r.ok()) return Fail(r.status());
  return 0;
}

// ---------------------------------------------------------------- trim, resize

int RunTrim(const std::string& target, bool json) {
  std::string mountpoint;
  auto r = VolumeRequest(target, {{"op", "trim"}}, true, &mountpoint);
  if (!r.ok()) return Fail(r.status());
  if (json) {
    fmt::print("{}\n", r->dump(2));
    return 0;
  }
  fmt::print("{}: {} trimmed", mountpoint.empty() ? target : mountpoint,
             FormatSize(r->value("trimmed_bytes", uint64_t{0})));
  if (uint64_t n = r->value("segments_cleaned", uint64_t{0}); n > 0) {
    fmt::print(" ({} partly used segments compacted first)", Thousands(n));
  }
  fmt::print("\n");
  return 0;
}

int RunResize(const std::string& target, const std::string& size, bool json) {
  nlohmann::json request = {{"op", "resize"}};
  if (!size.empty()) {
    bool relative = size[0] == '+';
    auto s = ParseSize(relative ? size.substr(1) : size);
    if (!s.ok()) return Fail(s.status().WithContext("--size"));
    if (*s == 0) return Fail(Status::Error(EINVAL, "--size: must be more than 0"));
    request[relative ? "grow_by" : "size"] = *s;
  }
  auto r = VolumeRequest(target, request, true);
  if (!r.ok()) return Fail(r.status());
  if (json) {
    fmt::print("{}\n", r->dump(2));
    return 0;
  }
  uint64_t old_bytes = r->value("old_bytes", uint64_t{0}), new_bytes = r->value("new_bytes", uint64_t{0});
  if (new_bytes == old_bytes) {
    fmt::print("{}: already spans {} of its device; nothing to grow\n", target, FormatSize(old_bytes));
    return 0;
  }
  fmt::print("{}: grown from {} to {} ({} segments, was {}); capacity {}, free {}\n", target, FormatSize(old_bytes),
             FormatSize(new_bytes), Thousands(r->value("new_segments", uint64_t{0})),
             Thousands(r->value("old_segments", uint64_t{0})), FormatSize(r->value("capacity_bytes", uint64_t{0})),
             FormatSize(r->value("free_bytes", uint64_t{0})));
  return 0;
}

// ---------------------------------------------------------------- umount(8) helper

// umount(8) runs /sbin/umount.fuse.qcfs TARGET [-flnrv] [-t TYPE] [-N NS]
// for a fuse.qcfs mount. Unmounting through qcfs umount makes a plain
// "umount /mnt/data" (and systemd at shutdown) return only once everything
// is flushed and the daemon has closed the volume.
int RunUmountHelper(const std::vector<std::string>& args) {
  std::string target;
  bool lazy = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-t" || a == "-N") {
      ++i;  // the type, or a namespace
    } else if (a.size() > 1 && a[0] == '-' && a[1] != '-') {
      // Flags, possibly grouped (-fl): -l detaches; -f (a stuck daemon)
      // also detaches rather than wait. -n, -r, -v, -d, -i change nothing.
      if (a.find_first_of("lf", 1) != std::string::npos) lazy = true;
    } else if (target.empty()) {
      target = a;
    }
  }
  if (target.empty()) {
    fmt::print(stderr, "usage: umount.fuse.qcfs MOUNTPOINT [-l] [-f]\n");
    return 2;
  }
  Status s = UnmountVolume(target, lazy);
  if (!s.ok()) return Fail(s);
  return 0;
}

// ---------------------------------------------------------------- scrub

// qcfs check --scrub MOUNTPOINT: the daemon reads back every chunk while it
// serves; this follows its progress. Interrupting this command leaves the
// scrub running (--cancel stops it); running it again follows it.
int RunScrub(const std::string& target, bool full, bool json, bool cancel) {
  std::optional<MountRecord> rec = FindMount(target);
  if (!rec) {
    return Fail(Status::Errorf(EINVAL, "{} is not a mounted QCFS volume (qcfs check DEVICE verifies an unmounted one)",
                               target));
  }
  if (cancel) {
    auto r = ControlCall(rec->socket, {{"op", "scrub-cancel"}});
    if (!r.ok()) return Fail(r.status());
    fmt::print("{}: scrub {}\n", rec->mountpoint, r->value("state", "") == "running" ? "cancelled" : "not running");
    return 0;
  }
  auto started = ControlCall(rec->socket, {{"op", "scrub-start"}, {"full", full}});
  if (!started.ok() && started.status().code() != EBUSY) return Fail(started.status());
  if (!started.ok() && !json) fmt::print(stderr, "A scrub is already running on {}; following it.\n", rec->mountpoint);
  const bool tty = !json && ::isatty(2);
  nlohmann::json st;
  for (;;) {
    auto r = ControlCall(rec->socket, {{"op", "scrub-status"}});
    if (!r.ok()) return Fail(r.status());
    st = *r;
    uint64_t done = st.value("chunks_done", uint64_t{0}), total = std::max<uint64_t>(1, st.value("chunks_total", uint64_t{0}));
    if (tty) {
      int pct = static_cast<int>(std::min<uint64_t>(100, done * 100 / total));
      fmt::print(stderr, "\rScrubbing {} [{}{}] {}% ({}/{} chunks, {})", rec->mountpoint, std::string(pct / 4, '#'),
                 std::string(25 - pct / 4, ' '), pct, Thousands(done), Thousands(total),
                 FormatSize(st.value("bytes_done", uint64_t{0})));
    }
    if (st.value("state", "") != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  if (tty) fmt::print(stderr, "\n");
  const auto& damaged = st["damaged"];
  if (json) {
    fmt::print("{}\n", st.dump(2));
  } else {
    double secs = static_cast<double>(st.value("finished_ns", int64_t{0}) - st.value("started_ns", int64_t{0})) / 1e9;
    fmt::print("Scrubbed {}: {} chunks, {} read back and verified{} in {:.1f} s\n", rec->mountpoint,
               Thousands(st.value("chunks_done", uint64_t{0})), FormatSize(st.value("bytes_done", uint64_t{0})),
               st.value("full", false) ? " (with their SHA-256)" : "", secs);
    std::string state = st.value("state", "");
    if (state == "cancelled") fmt::print("The scrub was cancelled before it finished.\n");
    if (state == "failed") fmt::print("The scrub failed: {}\n", st.value("failure", ""));
    for (const auto& d : damaged) {
      fmt::print("  damaged: chunk {}: {}\n", d.value("chunk", "").substr(0, 16), d.value("detail", ""));
      if (d["paths"].empty()) fmt::print("      held only by snapshots\n");
      for (const auto& p : d["paths"]) fmt::print("      affects {}\n", p.get<std::string>());
    }
    if (damaged.empty() && state == "done") fmt::print("No damage found.\n");
    if (!damaged.empty()) {
      fmt::print("{} damaged chunks: reads of the ranges that hold them fail with EIO; restore those files from a "
                 "backup or snapshot copy.\n",
                 damaged.size());
    }
  }
  if (!damaged.empty()) return 1;
  return st.value("state", "") == "done" ? 0 : 1;
}

// ---------------------------------------------------------------- check

int RunCheck(const std::string& device, bool repair, bool json, bool full, bool no_data) {
  if (auto rec = FindMount(device)) {
    return Fail(Status::Errorf(EBUSY, "{} is mounted at {}; unmount it before checking", device, rec->mountpoint));
  }
  CheckOptions o;
  o.repair = repair;
  o.full = full;
  o.verify_data = !no_data;
  const bool tty = !json && ::isatty(2);
  if (tty) {
    o.progress = [](uint64_t done, uint64_t total) {
      int pct = total == 0 ? 100 : static_cast<int>(done * 100 / total);
      int bar = pct / 4;
      fmt::print(stderr, "\rVerifying chunks [{}{}] {}% ({}/{})", std::string(bar, '#'), std::string(25 - bar, ' '),
                 pct, Thousands(done), Thousands(total));
      if (done == total) fmt::print(stderr, "\n");
    };
  }
  auto r = CheckVolume(device, o);
  if (!r.ok()) return Fail(r.status());
  const CheckReport& rep = *r;
  if (json) {
    nlohmann::json j = {{"clean", rep.clean()},
                        {"inodes", rep.inodes},
                        {"directories", rep.directories},
                        {"files", rep.files},
                        {"extents", rep.extents},
                        {"chunks", rep.chunks},
                        {"chunks_verified", rep.chunks_verified},
                        {"bytes_verified", rep.bytes_verified},
                        {"findings", nlohmann::json::array()}};
    for (const auto& f : rep.findings) {
      j["findings"].push_back({{"kind", f.kind}, {"detail", f.detail}, {"paths", f.paths}, {"repaired", f.repaired}});
    }
    fmt::print("{}\n", j.dump(2));
  } else {
    fmt::print("Checked {}: {} inodes ({} files, {} directories), {} chunks, {} verified ({})\n", device,
               Thousands(rep.inodes), Thousands(rep.files), Thousands(rep.directories), Thousands(rep.chunks),
               Thousands(rep.chunks_verified), FormatSize(rep.bytes_verified));
    if (rep.snapshots > 0) {
      fmt::print("  {} snapshots, {} versions kept for them\n", Thousands(rep.snapshots), Thousands(rep.kept_versions));
    }
    for (const auto& n : rep.notes) fmt::print("  note: {}\n", n);
    for (const auto& f : rep.findings) {
      fmt::print("  {} [{}] {}\n", f.repaired ? "repaired:" : "problem: ", f.kind, f.detail);
      for (const auto& p : f.paths) fmt::print("      affects {}\n", p);
    }
    if (rep.clean()) {
      fmt::print("No problems found.\n");
    } else if (rep.unrepaired() == 0) {
      fmt::print("{} problems found and repaired.\n", rep.findings.size());
    } else {
      fmt::print("{} problems found{}.\n", rep.findings.size(),
                 repair ? fmt::format(", {} could not be repaired (damaged data is kept)", rep.unrepaired())
                        : "; run qcfs check --repair to fix what can be fixed");
    }
  }
  return rep.clean() ? 0 : 1;
}

// ---------------------------------------------------------------- benchmark

std::atomic<bool> g_benchmark_cancel{false};

int RunBenchmarkCommand(const std::string& target, bool json, const std::string& size, bool quick,
                        const std::string& jobs) {
  BenchmarkOptions o = quick ? BenchmarkOptions::Quick() : BenchmarkOptions();
  o.mountpoint = target;
  if (!size.empty()) {
    auto s = ParseSize(size);
    if (!s.ok()) return Fail(s.status().WithContext("--size"));
    o.seq_size = *s;
    o.rand_size = *s / 2;
  }
  if (!jobs.empty()) {
    auto j = ParseJobList(jobs);
    if (!j.ok()) return Fail(j.status().WithContext("--jobs"));
    o.jobs = *j;
  }
  // Ctrl-C stops the running job; the temporary directory is removed.
  struct sigaction sa {};
  sa.sa_handler = [](int) { g_benchmark_cancel = true; };
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  o.cancel = &g_benchmark_cancel;
  o.progress = [](size_t i, size_t n, const std::string& name) {
    fmt::print(stderr, "[{}/{}] {}\n", i + 1, n, name);
  };
  auto r = RunBenchmark(o);
  if (!r.ok()) return Fail(r.status());
  if (json) fmt::print("{}\n", BenchmarkJson(*r).dump(2));
  else fmt::print("{}", BenchmarkSummary(*r));
  return 0;
}

}  // namespace
}  // namespace qcfs

int main(int argc, char** argv) {
  using namespace qcfs;
  // mount.fuse3 runs "qcfs SOURCE MOUNTPOINT -o OPTIONS": treat that as mount.
  std::vector<std::string> args(argv, argv + argc);
  if (std::string_view(argv[0]).ends_with("umount.fuse.qcfs")) return RunUmountHelper(args);
  static const std::vector<std::string> kCommands = {"mkfs",     "mount", "umount", "info",      "sync",
                                                     "check",    "snapshot", "trim", "resize", "benchmark", "help"};
  if (args.size() >= 3 && args[1][0] != '-' &&
      std::find(kCommands.begin(), kCommands.end(), args[1]) == kCommands.end()) {
    args.insert(args.begin() + 1, "mount");
  }

  CLI::App app{"QCFS: a compressing, deduplicating, checksumming filesystem", "qcfs"};
  app.set_version_flag("--version", std::string("qcfs ") + QCFS_VERSION_STRING);
  app.require_subcommand(1);

  auto* mkfs = app.add_subcommand("mkfs", "Create a QCFS volume on an image file or a block device");
  std::string mk_device, mk_size, mk_chunk = "64K", mk_comp = "lz4";
  bool mk_force = false;
  mkfs->add_option("device", mk_device, "Image file or block device")->required();
  mkfs->add_option("--size", mk_size, "Create (or resize) an image file of this size, e.g. 20G");
  mkfs->add_option("--chunk-size", mk_chunk, "Dedup and compression unit, 4K..1M (default 64K)");
  mkfs->add_option("--compression", mk_comp, "lz4 (default), zstd[:LEVEL] or none");
  mkfs->add_flag("-f,--force", mk_force, "Overwrite an existing file system");

  auto* mount = app.add_subcommand("mount", "Mount a QCFS volume (returns once the mount is ready)");
  std::string mt_device, mt_point;
  std::vector<std::string> mt_opts;
  bool mt_fg = false, mt_debug = false;
  mount->add_option("device", mt_device, "Image file or block device")->required();
  mount->add_option("mountpoint", mt_point, "Directory to mount on")->required();
  mount->add_option("-o", mt_opts, "Mount options, comma-separated (see below)")->allow_extra_args(false);
  mount->add_flag("-f,--foreground", mt_fg, "Stay in the foreground");
  mount->add_flag("-d,--debug", mt_debug, "Log every request (implies --foreground)");
  mount->footer(MountOptionsHelp());

  auto* umount = app.add_subcommand("umount", "Flush everything, unmount, and wait for the daemon to exit");
  std::string um_point;
  bool um_lazy = false;
  umount->add_option("mountpoint", um_point, "Mounted directory")->required();
  umount->add_flag("-l,--lazy", um_lazy, "Detach now even if busy");

  auto* info = app.add_subcommand("info", "Show space, compression and dedup figures");
  std::string in_target;
  bool in_json = false;
  info->add_option("target", in_target, "Mountpoint, image file or block device")->required();
  info->add_flag("--json", in_json, "Machine-readable output");

  auto* sync = app.add_subcommand(
      "sync", "Make everything written to a mounted volume durable, also what the kernel still caches");
  std::string sy_point;
  sync->add_option("mountpoint", sy_point, "Mounted directory (or its device)")->required();

  auto* check = app.add_subcommand(
      "check", "Verify every invariant and checksum of an unmounted volume, or scrub a mounted one");
  std::string ck_device;
  bool ck_repair = false, ck_json = false, ck_full = false, ck_nodata = false, ck_scrub = false, ck_cancel = false;
  check->add_option("device", ck_device, "Image file or block device (with --scrub: the mountpoint)")->required();
  check->add_flag("--scrub", ck_scrub,
                  "Read back and verify every chunk of a mounted volume while it serves (Ctrl-C leaves it running)");
  check->add_flag("--cancel", ck_cancel, "With --scrub: stop the running scrub");
  check->add_flag("--repair", ck_repair, "Fix counts, leaks and stale records; report damaged files");
  check->add_flag("--json", ck_json, "Machine-readable output");
  check->add_flag("--full", ck_full, "Also decompress every chunk and verify its fingerprint");
  check->add_flag("--metadata-only", ck_nodata, "Skip reading chunk data");

  auto* snapshot = app.add_subcommand("snapshot", "Create, list, diff, restore and delete snapshots");
  std::string sn_action, sn_target;
  std::vector<std::string> sn_names;
  bool sn_json = false, sn_chunks = false;
  snapshot->add_option("action", sn_action, "create, list, diff, restore or delete")->required();
  snapshot->add_option("target", sn_target, "Mountpoint, image file or block device")->required();
  snapshot->add_option("names", sn_names, "Snapshot name (diff: FROM [TO], TO defaults to the live tree)");
  snapshot->add_flag("--json", sn_json, "Machine-readable output");
  snapshot->add_flag("--chunks", sn_chunks, "diff: also the changed byte ranges");
  snapshot->footer(
      "Examples:\n"
      "  qcfs snapshot create /mnt/data nightly\n"
      "  qcfs snapshot list /mnt/data\n"
      "  qcfs snapshot diff /mnt/data nightly hourly --chunks\n"
      "  qcfs snapshot restore /mnt/data nightly     (takes a snapshot of the tree first)\n"
      "  qcfs snapshot delete /mnt/data nightly\n"
      "Snapshots are browsable read-only under MOUNTPOINT/.snapshots/NAME.");

  auto* trim = app.add_subcommand("trim", "Compact partly used segments and return all free space to the device");
  std::string tr_target;
  bool tr_json = false;
  trim->add_option("target", tr_target, "Mountpoint, image file or block device")->required();
  trim->add_flag("--json", tr_json, "Machine-readable output");
  trim->footer(
      "fstrim does not reach FUSE file systems (the kernel does not pass FITRIM\n"
      "to them): run qcfs trim instead, e.g. from a timer. With the discard mount\n"
      "option (the default) freed segments are returned as they are freed.");

  auto* resize = app.add_subcommand("resize", "Grow a volume onto a larger partition or image file, mounted or not");
  std::string rs_target, rs_size;
  bool rs_json = false;
  resize->add_option("target", rs_target, "Image file, block device or mountpoint")->required();
  resize->add_option("--size", rs_size,
                     "New size (e.g. 200G) or growth (+50G); default: all of the device. An image file is "
                     "extended to it.");
  resize->add_flag("--json", rs_json, "Machine-readable output");

  auto* bench =
      app.add_subcommand("benchmark", "Measure a mounted volume: sequential, random 4K and metadata jobs (needs fio)");
  std::string bm_target, bm_size, bm_jobs;
  bool bm_json = false, bm_quick = false;
  bench->add_option("mountpoint", bm_target, "Mounted QCFS volume")->required();
  bench->add_option("--size", bm_size,
                    "Size of the sequential jobs' file (default 2G; the random jobs use two files of half that)");
  bench->add_flag("--quick", bm_quick, "Small sizes, a few minutes: 256M sequential, 2 x 128M random for 5 s, "
                                       "2,000 files");
  bench->add_option("--jobs", bm_jobs, "Comma-separated jobs to run (default: all; see below)");
  bench->add_flag("--json", bm_json, "Machine-readable output");
  bench->footer(
      "Jobs: seqwrite, seqwrite-compressible, seqwrite-dedup, seqread, randread,\n"
      "randread-direct, randwrite, randrw, metadata, treecopy (cp -a /usr/include).\n"
      "They run in a temporary directory under the mountpoint, removed afterwards;\n"
      "as root the kernel's caches are dropped before each. bench/compare.sh runs\n"
      "the same jobs on ext4 and libfuse's passthrough_ll too.");

  try {
    std::vector<std::string> rev(args.rbegin(), args.rend() - 1);
    app.parse(rev);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (*mkfs) return RunMkfs(mk_device, mk_size, mk_chunk, mk_comp, mk_force);
  if (*mount) {
    MountRequest req;
    req.device = mt_device;
    req.mountpoint = mt_point;
    Status s = ParseMountOptions(mt_opts, &req.config);
    if (!s.ok()) return Fail(s);
    req.config.foreground = mt_fg || mt_debug;
    req.config.debug = mt_debug;
    if (req.config.debug) SetLogLevel(LogLevel::kDebug);
    s = MountAndServe(req);
    if (!s.ok()) return Fail(s);
    return 0;
  }
  if (*umount) {
    Status s = UnmountVolume(um_point, um_lazy);
    if (!s.ok()) return Fail(s);
    return 0;
  }
  if (*info) return RunInfo(in_target, in_json);
  if (*sync) return RunSync(sy_point);
  if (*check && (ck_scrub || ck_cancel)) {
    if (ck_repair || ck_nodata) {
      fmt::print(stderr, "qcfs: --scrub reads and verifies; --repair and --metadata-only apply to unmounted volumes\n");
      return 2;
    }
    return RunScrub(ck_device, ck_full, ck_json, ck_cancel);
  }
  if (*check) return RunCheck(ck_device, ck_repair, ck_json, ck_full, ck_nodata);
  if (*snapshot) return RunSnapshot(sn_action, sn_target, sn_names, sn_json, sn_chunks);
  if (*trim) return RunTrim(tr_target, tr_json);
  if (*resize) return RunResize(rs_target, rs_size, rs_json);
  if (*bench) return RunBenchmarkCommand(bm_target, bm_json, bm_size, bm_quick, bm_jobs);
  return 2;
}
