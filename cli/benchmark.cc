#include "cli/benchmark.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/core.h>

#include "qcfs/control/control.h"
#include "qcfs/core/unique_fd.h"
#include "qcfs/core/units.h"

extern char** environ;

namespace qcfs {
namespace {

namespace fs = std::filesystem;

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

bool Cancelled(const std::atomic<bool>* cancel) { return cancel != nullptr && cancel->load(); }

Status CancelledStatus() { return Status::Error(ECANCELED, "benchmark interrupted"); }

struct EmbeddedJob {
  const char* name;
  const char* text;
};

// bench/fio/*.fio, read by CMake when it configures the build.
constexpr EmbeddedJob kFioJobs[] = {
#include "fio_jobs.inc"
};

// ---------------------------------------------------------------- metadata job

// Text that compresses like prose, so the files are not all zeros; each file
// starts with its own number and takes a different window of it.
const std::string& Filler() {
  static const std::string text = [] {
    static const char* kWords[] = {"the", "chunk", "store", "keeps", "every", "segment", "sealed", "once",
                                   "written", "and", "checksums", "what", "it", "reads", "back", "from",
                                   "disk", "volume", "snapshot", "file"};
    std::string s;
    uint32_t x = 2463534242u;
    while (s.size() < (128u << 10)) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      s += kWords[x % 20];
      s += (x >> 8) % 11 == 0 ? ".\n" : " ";
    }
    return s;
  }();
  return text;
}

std::string FileContent(uint64_t index, uint32_t size) {
  std::string s = fmt::format("file {}\n", index);
  const std::string& filler = Filler();
  size_t at = static_cast<size_t>(index * 977 % (filler.size() - size - 1));
  if (s.size() < size) s += filler.substr(at, size - s.size());
  s.resize(size);
  return s;
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, fmt::format("write {}", path));
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

struct MetaLayout {
  std::vector<std::string> dirs;   // parents first, then leaves; relative to DIR/meta
  std::vector<std::string> files;  // relative to DIR/meta; files[i] is in leaf i / files_per_dir
};

MetaLayout Layout(uint64_t files, uint32_t per_dir) {
  MetaLayout m;
  per_dir = std::max<uint32_t>(per_dir, 1);
  uint64_t leaves = (files + per_dir - 1) / per_dir;
  uint64_t parents = (leaves + 9) / 10;
  for (uint64_t p = 0; p < parents; ++p) m.dirs.push_back(fmt::format("d{}", p));
  for (uint64_t l = 0; l < leaves; ++l) m.dirs.push_back(fmt::format("d{}/d{}", l / 10, l % 10));
  m.files.reserve(files);
  for (uint64_t i = 0; i < files; ++i) {
    uint64_t l = i / per_dir;
    m.files.push_back(fmt::format("d{}/d{}/f{}", l / 10, l % 10, i));
  }
  return m;
}

Status MetadataPhases(int root, const MetaLayout& m, const MetadataBenchOptions& o, MetadataBenchResult* r) {
  const uint32_t per_dir = std::max<uint32_t>(o.files_per_dir, 1);
  const size_t parents = m.dirs.size() - (m.files.size() + per_dir - 1) / per_dir;

  // Create: the parents, then each leaf as its first file comes.
  auto start = Clock::now();
  for (size_t p = 0; p < parents; ++p) {
    if (::mkdirat(root, m.dirs[p].c_str(), 0755) != 0) return ErrnoStatus(errno, "mkdir " + m.dirs[p]);
  }
  for (size_t i = 0; i < m.files.size(); ++i) {
    if (i % per_dir == 0) {
      const std::string& leaf = m.dirs[parents + i / per_dir];
      if (::mkdirat(root, leaf.c_str(), 0755) != 0) return ErrnoStatus(errno, "mkdir " + leaf);
      if (Cancelled(o.cancel)) return CancelledStatus();
    }
    std::string content = FileContent(i, o.file_size);
    UniqueFd fd(::openat(root, m.files[i].c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd.valid()) return ErrnoStatus(errno, "create " + m.files[i]);
    QCFS_RETURN_IF_ERROR(WriteAll(fd.get(), content, m.files[i]));
    if (::close(fd.release()) != 0) return ErrnoStatus(errno, "close " + m.files[i]);
  }
  r->create_s = SecondsSince(start);

  start = Clock::now();
  if (::syncfs(root) != 0) return ErrnoStatus(errno, "syncfs");
  r->sync_s = SecondsSince(start);
  if (o.drop_caches) r->caches_dropped = DropCaches();

  start = Clock::now();
  for (size_t i = 0; i < m.files.size(); ++i) {
    struct stat st {};
    if (::fstatat(root, m.files[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoStatus(errno, "stat " + m.files[i]);
    }
    if (!S_ISREG(st.st_mode) || st.st_size != static_cast<off_t>(o.file_size)) {
      return Status::Errorf(EIO, "stat {}: mode {:o}, size {} (expected a regular file of {} bytes)", m.files[i],
                            st.st_mode, st.st_size, o.file_size);
    }
    if (i % 256 == 0 && Cancelled(o.cancel)) return CancelledStatus();
  }
  r->stat_s = SecondsSince(start);

  start = Clock::now();
  for (size_t i = 0; i < m.files.size(); ++i) {
    if (::unlinkat(root, m.files[i].c_str(), 0) != 0) return ErrnoStatus(errno, "unlink " + m.files[i]);
    if (i % 256 == 0 && Cancelled(o.cancel)) return CancelledStatus();
  }
  for (size_t k = m.dirs.size(); k-- > 0;) {
    if (::unlinkat(root, m.dirs[k].c_str(), AT_REMOVEDIR) != 0) return ErrnoStatus(errno, "rmdir " + m.dirs[k]);
  }
  r->delete_s = SecondsSince(start);
  return Status::Ok();
}

// ---------------------------------------------------------------- processes

// Runs ARGV (found on $PATH) with EXTRA_ENV added, stdout to /dev/null and
// stderr to STDERR_PATH; returns its exit status (128+N for signal N).
// Cancellation sends SIGINT (fio then stops its job and exits), then SIGKILL.
Result<int> RunProcess(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                       const std::string& stderr_path, const std::atomic<bool>* cancel) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    bool replaced = std::any_of(extra_env.begin(), extra_env.end(), [&](const std::string& x) {
      return kv.substr(0, kv.find('=') + 1) == std::string_view(x).substr(0, x.find('=') + 1);
    });
    if (!replaced) env_strings.emplace_back(kv);
  }
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  int err = ::posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return ErrnoStatus(err, "run " + argv[0]);

  auto interrupted_at = Clock::time_point::max();
  for (;;) {
    int st = 0;
    pid_t w = ::waitpid(pid, &st, WNOHANG);
    if (w == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (w < 0 && errno != EINTR) return ErrnoStatus(errno, "wait for " + argv[0]);
    if (Cancelled(cancel)) {
      if (interrupted_at == Clock::time_point::max()) {
        ::kill(pid, SIGINT);
        interrupted_at = Clock::now();
      } else if (SecondsSince(interrupted_at) > 15) {
        ::kill(pid, SIGKILL);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string ReadFileText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The last N lines of TEXT, joined by "; " (for an error message).
std::string LastLines(const std::string& text, size_t n) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) {
    out += (out.empty() ? "" : "; ") + lines[i];
  }
  return out.empty() ? "no message" : out;
}

// ---------------------------------------------------------------- the suite

enum class JobKind { kFio, kMetadata, kTree };

struct JobSpec {
  const char* name;
  JobKind kind;
  // Reads or overwrites files that must exist first (laid out with
  // fio --create_only=1 before the caches are dropped).
  bool needs_layout;
  // Writes new data whose compression and dedup the run reports.
  bool new_data;
  const char* description;
};

const JobSpec kJobs[] = {
    {"seqwrite", JobKind::kFio, false, true, "sequential write, 1 MiB blocks, incompressible, fsync at the end"},
    {"seqwrite-compressible", JobKind::kFio, false, true, "sequential write, 1 MiB blocks, 50% compressible"},
    {"seqwrite-dedup", JobKind::kFio, false, true, "sequential write, 1 MiB blocks, 50% duplicate blocks"},
    {"seqread", JobKind::kFio, true, false, "sequential read, 1 MiB blocks, cold"},
    {"randread", JobKind::kFio, true, false, "random 4 KiB read, buffered, cold, QD32 x 2 jobs"},
    {"randread-direct", JobKind::kFio, true, false, "random 4 KiB read, O_DIRECT, QD32 x 2 jobs"},
    {"randwrite", JobKind::kFio, true, false, "random 4 KiB write, QD32 x 2 jobs, fsync at the end"},
    {"randrw", JobKind::kFio, true, false, "random 4 KiB 70% read / 30% write, QD32 x 2 jobs, fsync at the end"},
    {"metadata", JobKind::kMetadata, false, false, "create, stat (cold), delete small files in nested directories"},
    {"treecopy", JobKind::kTree, false, true, "cp -a of a source tree"},
};

const JobSpec* FindJob(std::string_view name) {
  for (const auto& j : kJobs) {
    if (name == j.name) return &j;
  }
  return nullptr;
}

// Removes a directory tree when it goes out of scope.
class TreeRemover {
 public:
  explicit TreeRemover(std::string path) : path_(std::move(path)) {}
  TreeRemover(const TreeRemover&) = delete;
  TreeRemover& operator=(const TreeRemover&) = delete;
  ~TreeRemover() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }

 private:
  std::string path_;
};

Result<std::string> MakeTempDir(const std::string& parent, const std::string& prefix) {
  std::string tmpl = parent + "/" + prefix + "XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return ErrnoStatus(errno, "create a directory in " + parent);
  return tmpl;
}

// Reads every regular file under TREE once, so that copying it measures the
// target and not the source disk. Returns (files, bytes).
std::pair<uint64_t, uint64_t> PreRead(const std::string& tree) {
  uint64_t files = 0, bytes = 0;
  std::vector<char> buf(1 << 20);
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(tree, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file(ec) || it->is_symlink(ec)) continue;
    ++files;
    UniqueFd fd(::open(it->path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) continue;
    ssize_t n;
    while ((n = ::read(fd.get(), buf.data(), buf.size())) > 0) bytes += static_cast<uint64_t>(n);
  }
  return {files, bytes};
}

// One run of the suite on one mounted volume.
class Runner {
 public:
  Runner(const BenchmarkOptions& o, MountRecord rec, std::string work, std::string host)
      : o_(o), rec_(std::move(rec)), work_(std::move(work)), host_(std::move(host)) {}

  Result<BenchmarkJobResult> Run(const JobSpec& job) {
    BenchmarkJobResult r;
    r.name = job.name;
    r.description = job.description;
    if (job.kind == JobKind::kTree) r.description += " (" + o_.tree + ")";
    switch (job.kind) {
      case JobKind::kFio: QCFS_RETURN_IF_ERROR(RunFio(job, &r)); break;
      case JobKind::kMetadata: QCFS_RETURN_IF_ERROR(RunMetadata(&r)); break;
      case JobKind::kTree: QCFS_RETURN_IF_ERROR(RunTree(&r)); break;
    }
    return r;
  }

  bool caches_dropped() const { return caches_dropped_; }

 private:
  std::vector<std::string> Env() const {
    return {"QCFS_BENCH_DIR=" + work_, fmt::format("QCFS_BENCH_SIZE={}", o_.seq_size),
            fmt::format("QCFS_BENCH_RAND_SIZE={}", o_.rand_size), fmt::format("QCFS_BENCH_RUNTIME={}", o_.runtime_s)};
  }

  // Flushes the daemon, then the kernel's caches: the next job starts cold.
  Status Settle() {
    QCFS_RETURN_IF_ERROR(SyncMount(rec_.mountpoint));
    QCFS_RETURN_IF_ERROR(ControlCall(rec_.socket, {{"op", "sync"}}).status());
    caches_dropped_ = DropCaches();
    return Status::Ok();
  }

  struct Snapshot {
    double cpu_s = 0;
    nlohmann::json info;
  };
  Result<Snapshot> Take(bool flush) {
    if (flush) {
      QCFS_RETURN_IF_ERROR(SyncMount(rec_.mountpoint));
      QCFS_RETURN_IF_ERROR(ControlCall(rec_.socket, {{"op", "sync"}}).status());
    }
    Snapshot s;
    QCFS_ASSIGN_OR_RETURN(s.info, ControlCall(rec_.socket, {{"op", "info"}}));
    QCFS_ASSIGN_OR_RETURN(ProcessUsage u, ReadProcessUsage(rec_.pid));
    s.cpu_s = u.cpu_s;
    return s;
  }

  static void Account(const Snapshot& before, const Snapshot& after, bool new_data, BenchmarkJobResult* r) {
    auto delta = [&](const char* key) {
      return static_cast<int64_t>(after.info.value(key, uint64_t{0})) -
             static_cast<int64_t>(before.info.value(key, uint64_t{0}));
    };
    r->daemon_cpu_s = after.cpu_s - before.cpu_s;
    r->logical_bytes = delta("logical_bytes");
    r->unique_bytes = delta("unique_bytes");
    r->stored_bytes = delta("stored_bytes");
    r->has_space = new_data && r->logical_bytes > 0;
  }

  Status Fio(const std::vector<std::string>& extra, const std::string& job_file, const std::string& tag,
             std::string* json_out) {
    std::string err = host_ + "/" + tag + ".err";
    std::vector<std::string> argv = {"fio"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::string out = host_ + "/" + tag + ".json";
    if (json_out) argv.insert(argv.end(), {"--output-format=json", "--output=" + out});
    argv.push_back(job_file);
    QCFS_ASSIGN_OR_RETURN(int rc, RunProcess(argv, Env(), err, o_.cancel));
    if (Cancelled(o_.cancel)) return CancelledStatus();
    if (rc != 0) {
      return Status::Errorf(EIO, "fio {} failed (exit status {}): {}", tag, rc, LastLines(ReadFileText(err), 5));
    }
    if (json_out) *json_out = ReadFileText(out);
    return Status::Ok();
  }

  Status RunFio(const JobSpec& job, BenchmarkJobResult* r) {
    std::optional<std::string_view> text = FioJobText(job.name);
    if (!text) return Status::Errorf(ENOENT, "no fio job {} in this build", job.name);
    std::string job_file = host_ + "/" + job.name + ".fio";
    {
      std::ofstream f(job_file);
      f << *text;
      if (!f) return Status::Errorf(EIO, "cannot write {}", job_file);
    }
    const bool shared_rand = std::string_view(job.name).starts_with("rand");
    if (job.needs_layout && !(shared_rand && rand_laid_out_)) {
      QCFS_RETURN_IF_ERROR(Fio({"--create_only=1"}, job_file, std::string(job.name) + ".layout", nullptr));
      if (shared_rand) rand_laid_out_ = true;
    }
    QCFS_RETURN_IF_ERROR(Settle());
    QCFS_ASSIGN_OR_RETURN(Snapshot before, Take(false));
    std::string json;
    QCFS_RETURN_IF_ERROR(Fio({}, job_file, job.name, &json));
    QCFS_ASSIGN_OR_RETURN(Snapshot after, Take(true));
    QCFS_ASSIGN_OR_RETURN(r->fio, ParseFioJson(json));
    Account(before, after, job.new_data, r);
    if (!shared_rand) {
      std::error_code ec;
      fs::remove(work_ + "/" + job.name + ".dat", ec);
    }
    return Status::Ok();
  }

  Status RunMetadata(BenchmarkJobResult* r) {
    QCFS_RETURN_IF_ERROR(Settle());
    QCFS_ASSIGN_OR_RETURN(Snapshot before, Take(false));
    MetadataBenchOptions mo;
    mo.files = o_.files;
    mo.cancel = o_.cancel;
    QCFS_ASSIGN_OR_RETURN(r->metadata, RunMetadataBench(work_, mo));
    QCFS_ASSIGN_OR_RETURN(Snapshot after, Take(true));
    Account(before, after, false, r);
    return Status::Ok();
  }

  Status RunTree(BenchmarkJobResult* r) {
    QCFS_RETURN_IF_ERROR(Settle());
    std::tie(r->tree_files, r->tree_bytes) = PreRead(o_.tree);
    QCFS_ASSIGN_OR_RETURN(Snapshot before, Take(false));
    std::string dest = work_ + "/tree";
    auto start = Clock::now();
    QCFS_ASSIGN_OR_RETURN(int rc, RunProcess({"cp", "-a", o_.tree, dest}, {}, host_ + "/cp.err", o_.cancel));
    r->copy_s = SecondsSince(start);
    if (Cancelled(o_.cancel)) return CancelledStatus();
    if (rc != 0) {
      return Status::Errorf(EIO, "cp -a {} failed (exit status {}): {}", o_.tree, rc,
                            LastLines(ReadFileText(host_ + "/cp.err"), 5));
    }
    start = Clock::now();
    QCFS_ASSIGN_OR_RETURN(Snapshot after, Take(true));
    r->flush_s = SecondsSince(start);
    Account(before, after, true, r);
    std::error_code ec;
    fs::remove_all(dest, ec);
    if (ec) return Status::Errorf(ec.value(), "remove {}: {}", dest, ec.message());
    return Status::Ok();
  }

  const BenchmarkOptions& o_;
  MountRecord rec_;
  std::string work_;  // on the volume
  std::string host_;  // job files and fio's output, off the volume
  bool rand_laid_out_ = false;
  bool caches_dropped_ = false;
};

std::string Grouped(double v) {
  std::string digits = fmt::format("{:.0f}", v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && digits[i - 1] != '-' && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

double MiB(double bytes) { return bytes / (1024.0 * 1024.0); }

std::string Rate(double bytes_per_s) {
  double m = MiB(bytes_per_s);
  return m >= 100 ? Grouped(m) + " MiB/s" : fmt::format("{:.1f} MiB/s", m);
}

}  // namespace

// ---------------------------------------------------------------- public: metadata

Result<MetadataBenchResult> RunMetadataBench(const std::string& dir, const MetadataBenchOptions& options) {
  if (options.files == 0) return Status::Error(EINVAL, "the metadata job needs at least one file");
  if (options.file_size > (64u << 10)) return Status::Error(EINVAL, "metadata job files are at most 64 KiB");
  std::string top = dir + "/meta";
  if (::mkdir(top.c_str(), 0755) != 0) return ErrnoStatus(errno, "mkdir " + top);
  TreeRemover remover(top);  // a no-op when the delete phase got through
  UniqueFd root(::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return ErrnoStatus(errno, "open " + top);
  MetaLayout layout = Layout(options.files, options.files_per_dir);
  MetadataBenchResult r;
  r.files = options.files;
  r.file_size = options.file_size;
  r.directories = layout.dirs.size();
  QCFS_RETURN_IF_ERROR(MetadataPhases(root.get(), layout, options, &r));
  root.reset();
  if (::rmdir(top.c_str()) != 0) return ErrnoStatus(errno, "rmdir " + top);
  return r;
}

nlohmann::json MetadataBenchJson(const MetadataBenchResult& r) {
  return {{"files", r.files},
          {"file_size", r.file_size},
          {"directories", r.directories},
          {"create_per_s", r.create_per_s()},
          {"stat_per_s", r.stat_per_s()},
          {"delete_per_s", r.delete_per_s()},
          {"create_s", r.create_s},
          {"sync_s", r.sync_s},
          {"stat_s", r.stat_s},
          {"delete_s", r.delete_s},
          {"caches_dropped", r.caches_dropped}};
}

// ---------------------------------------------------------------- public: helpers

bool DropCaches() {
  ::sync();
  UniqueFd fd(::open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  return ::write(fd.get(), "3", 1) == 1;
}

std::optional<std::string> FindExecutable(std::string_view name) {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!dirs.empty()) {
    size_t colon = dirs.find(':');
    std::string_view d = dirs.substr(0, colon);
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    std::string candidate = fmt::format("{}/{}", d.empty() ? "." : d, name);
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return std::nullopt;
}

Result<ProcessUsage> ReadProcessUsage(pid_t pid) {
  std::string stat = ReadFileText(fmt::format("/proc/{}/stat", pid));
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return Status::Errorf(ESRCH, "no process {}", pid);
  // After "pid (comm)": state is field 3, utime 14, stime 15.
  std::istringstream in(stat.substr(paren + 1));
  std::vector<std::string> fields;
  for (std::string f; in >> f;) fields.push_back(f);
  if (fields.size() < 13) return Status::Errorf(EIO, "/proc/{}/stat: too few fields", pid);
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  ProcessUsage u;
  u.cpu_s = (std::stod(fields[11]) + std::stod(fields[12])) / ticks;
  std::istringstream status(ReadFileText(fmt::format("/proc/{}/status", pid)));
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmHWM:")) u.peak_rss_bytes = std::stoull(line.substr(6)) * 1024;
  }
  return u;
}

// ---------------------------------------------------------------- public: fio

std::vector<std::string> FioJobNames() {
  std::vector<std::string> names;
  for (const auto& j : kFioJobs) names.emplace_back(j.name);
  return names;
}

std::optional<std::string_view> FioJobText(std::string_view name) {
  for (const auto& j : kFioJobs) {
    if (name == j.name) return std::string_view(j.text);
  }
  return std::nullopt;
}

Result<FioResult> ParseFioJson(std::string_view text) {
  size_t brace = text.find('{');
  if (brace == std::string_view::npos) return Status::Error(EINVAL, "fio's output holds no JSON");
  nlohmann::json j = nlohmann::json::parse(text.substr(brace), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.contains("jobs") || !j["jobs"].is_array() || j["jobs"].empty()) {
    return Status::Error(EINVAL, "fio's output is not the JSON of a finished run");
  }
  FioResult r;
  for (const auto& job : j["jobs"]) {
    if (job.value("error", 0) != 0) {
      return Status::Errorf(EIO, "fio job {} failed: error {}", job.value("jobname", "?"), job.value("error", 0));
    }
    const auto& rd = job["read"];
    const auto& wr = job["write"];
    r.read_bytes_per_s += rd.value("bw_bytes", 0.0);
    r.write_bytes_per_s += wr.value("bw_bytes", 0.0);
    r.read_iops += rd.value("iops", 0.0);
    r.write_iops += wr.value("iops", 0.0);
    r.read_bytes += rd.value("io_bytes", uint64_t{0});
    r.write_bytes += wr.value("io_bytes", uint64_t{0});
    double ms = std::max(rd.value("runtime", 0.0), wr.value("runtime", 0.0));
    r.runtime_s = std::max(r.runtime_s, ms / 1000.0);
  }
  return r;
}

// ---------------------------------------------------------------- public: the suite

const std::vector<std::string>& BenchmarkJobNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& j : kJobs) v.emplace_back(j.name);
    return v;
  }();
  return names;
}

Result<std::vector<std::string>> ParseJobList(std::string_view list) {
  std::vector<bool> wanted(std::size(kJobs), false);
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view name = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (name.empty()) continue;
    const JobSpec* job = FindJob(name);
    if (job == nullptr) {
      std::string all;
      for (const auto& n : BenchmarkJobNames()) all += (all.empty() ? "" : ", ") + n;
      return Status::Errorf(EINVAL, "unknown job '{}': the jobs are {}", name, all);
    }
    wanted[static_cast<size_t>(job - kJobs)] = true;
  }
  std::vector<std::string> jobs;
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (wanted[i]) jobs.emplace_back(kJobs[i].name);
  }
  if (jobs.empty()) return Status::Error(EINVAL, "no jobs named");
  return jobs;
}

BenchmarkOptions BenchmarkOptions::Quick() {
  BenchmarkOptions o;
  o.seq_size = 256ull << 20;
  o.rand_size = 128ull << 20;
  o.runtime_s = 5;
  o.files = 2000;
  return o;
}

double BenchmarkJobResult::compression_ratio() const {
  return stored_bytes > 0 ? static_cast<double>(unique_bytes) / static_cast<double>(stored_bytes) : 0;
}

double BenchmarkJobResult::dedup_ratio() const {
  return unique_bytes > 0 ? static_cast<double>(logical_bytes) / static_cast<double>(unique_bytes) : 0;
}

uint64_t BenchmarkJobResult::bytes_written() const { return fio.write_bytes + (copy_s > 0 ? tree_bytes : 0); }

double BenchmarkJobResult::cpu_s_per_gib_written() const {
  uint64_t bytes = bytes_written();
  return bytes > 0 ? daemon_cpu_s / (static_cast<double>(bytes) / (1u << 30)) : 0;
}

const BenchmarkJobResult* BenchmarkReport::Find(std::string_view name) const {
  for (const auto& j : jobs) {
    if (j.name == name) return &j;
  }
  return nullptr;
}

double BenchmarkReport::cpu_s_per_gib_written(std::string_view prefix) const {
  double cpu = 0, bytes = 0;
  for (const auto& j : jobs) {
    if (j.bytes_written() == 0 || !j.name.starts_with(prefix)) continue;
    cpu += j.daemon_cpu_s;
    bytes += static_cast<double>(j.bytes_written());
  }
  return bytes > 0 ? cpu / (bytes / (1024.0 * 1024.0 * 1024.0)) : 0;
}

Result<BenchmarkReport> RunBenchmark(const BenchmarkOptions& options) {
  std::optional<MountRecord> rec = FindMount(options.mountpoint);
  if (!rec) {
    return Status::Errorf(EINVAL, "{} is not a mounted QCFS volume: mount one (qcfs mount DEVICE MOUNTPOINT) and "
                                  "give its mountpoint",
                          options.mountpoint);
  }
  BenchmarkReport report;
  report.options = options;
  report.options.cancel = nullptr;
  report.options.progress = nullptr;
  if (report.options.jobs.empty()) report.options.jobs = BenchmarkJobNames();
  for (const auto& name : report.options.jobs) {
    if (FindJob(name) == nullptr) return Status::Errorf(EINVAL, "unknown job '{}'", name);
  }
  report.mountpoint = rec->mountpoint;
  report.device = rec->device;
  const auto& jobs = report.options.jobs;
  auto has = [&](std::string_view prefix) {
    return std::any_of(jobs.begin(), jobs.end(), [&](const std::string& j) { return j.starts_with(prefix); });
  };
  bool any_fio = std::any_of(jobs.begin(), jobs.end(), [](const std::string& j) {
    return FindJob(j)->kind == JobKind::kFio;
  });
  if (any_fio && !FindExecutable("fio")) return Status::Error(ENOENT, "fio is not installed: apt-get install fio");
  if (options.seq_size < (1u << 20) || options.rand_size < (1u << 20)) {
    return Status::Error(EINVAL, "sizes under 1 MiB measure nothing: give --size 16M or more");
  }

  // Room for the largest job plus the random jobs' files, twice over (space
  // freed by one job may not be reusable before the cleaner has run).
  QCFS_ASSIGN_OR_RETURN(nlohmann::json info, ControlCall(rec->socket, {{"op", "info"}}));
  uint64_t need = 2 * ((has("seq") ? options.seq_size : 0) + (has("rand") ? 2 * options.rand_size : 0));
  uint64_t free_bytes = info.value("free_bytes", uint64_t{0});
  if (need > free_bytes) {
    return Status::Errorf(ENOSPC, "the benchmark needs about {} free on {}, which has {}: give a smaller --size",
                          FormatSize(need), rec->mountpoint, FormatSize(free_bytes));
  }
  bool tree_job = std::find(jobs.begin(), jobs.end(), "treecopy") != jobs.end();
  if (tree_job && !fs::is_directory(options.tree)) {
    report.notes.push_back(fmt::format("treecopy skipped: {} is not a directory", options.tree));
  }

  const char* tmp = std::getenv("TMPDIR");
  QCFS_ASSIGN_OR_RETURN(std::string host, MakeTempDir(tmp && *tmp ? tmp : "/tmp", "qcfs-benchmark."));
  TreeRemover host_remover(host);
  QCFS_ASSIGN_OR_RETURN(std::string work, MakeTempDir(rec->mountpoint, ".qcfs-benchmark."));
  TreeRemover work_remover(work);

  BenchmarkOptions run = report.options;
  run.cancel = options.cancel;
  Runner runner(run, *rec, work, host);
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (Cancelled(options.cancel)) return CancelledStatus();
    const JobSpec& spec = *FindJob(jobs[i]);
    if (spec.kind == JobKind::kTree && !fs::is_directory(options.tree)) continue;
    if (options.progress) options.progress(i, jobs.size(), jobs[i]);
    auto r = runner.Run(spec);
    if (!r.ok()) return r.status().WithContext(jobs[i]);
    report.jobs.push_back(std::move(*r));
  }
  report.caches_dropped = runner.caches_dropped();
  if (!report.caches_dropped) {
    report.notes.push_back("the kernel's caches were not dropped (that needs root): reads may have been warm");
  }
  QCFS_ASSIGN_OR_RETURN(ProcessUsage usage, ReadProcessUsage(rec->pid));
  report.daemon_peak_rss_bytes = usage.peak_rss_bytes;
  return report;
}

nlohmann::json BenchmarkJson(const BenchmarkReport& report) {
  const BenchmarkOptions& o = report.options;
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& j : report.jobs) {
    nlohmann::json x = {{"name", j.name}, {"description", j.description}, {"daemon_cpu_s", j.daemon_cpu_s}};
    if (j.metadata) {
      x["metadata"] = MetadataBenchJson(*j.metadata);
    } else if (j.copy_s > 0) {
      x["tree"] = {{"source", o.tree},   {"files", j.tree_files}, {"bytes", j.tree_bytes},
                   {"copy_s", j.copy_s}, {"flush_s", j.flush_s}};
    } else {
      x["read_mib_s"] = MiB(j.fio.read_bytes_per_s);
      x["write_mib_s"] = MiB(j.fio.write_bytes_per_s);
      x["read_iops"] = j.fio.read_iops;
      x["write_iops"] = j.fio.write_iops;
      x["read_bytes"] = j.fio.read_bytes;
      x["write_bytes"] = j.fio.write_bytes;
      x["runtime_s"] = j.fio.runtime_s;
    }
    if (j.bytes_written() > 0) {
      x["cpu_s_per_gib_written"] = j.cpu_s_per_gib_written();
    }
    if (j.has_space) {
      x["space"] = {{"logical_bytes", j.logical_bytes},
                    {"unique_bytes", j.unique_bytes},
                    {"stored_bytes", j.stored_bytes},
                    {"compression_ratio", j.compression_ratio()},
                    {"dedup_ratio", j.dedup_ratio()}};
    }
    jobs.push_back(std::move(x));
  }
  return {{"mountpoint", report.mountpoint},
          {"device", report.device},
          {"sizes",
           {{"seq_bytes", o.seq_size}, {"rand_bytes_per_job", o.rand_size}, {"rand_runtime_s", o.runtime_s},
            {"metadata_files", o.files}}},
          {"caches_dropped", report.caches_dropped},
          {"jobs", jobs},
          {"daemon", {{"peak_rss_bytes", report.daemon_peak_rss_bytes},
                      {"cpu_s_per_gib_written", report.cpu_s_per_gib_written()},
                      {"cpu_s_per_gib_written_sequentially", report.cpu_s_per_gib_written("seqwrite")},
                      {"cpu_s_per_gib_written_randomly", report.cpu_s_per_gib_written("rand")}}},
          {"notes", report.notes}};
}

std::string BenchmarkSummary(const BenchmarkReport& report) {
  const BenchmarkOptions& o = report.options;
  std::string s = fmt::format("QCFS benchmark of {}: sequential {}, random 2 x {} for {} s, {} files\n\n",
                              report.mountpoint, FormatSize(o.seq_size), FormatSize(o.rand_size), o.runtime_s,
                              Grouped(static_cast<double>(o.files)));
  // The headline.
  std::vector<std::string> parts;
  const BenchmarkJobResult* sw = report.Find("seqwrite");
  const BenchmarkJobResult* sr = report.Find("seqread");
  if (sw || sr) {
    std::string p = "Sequential: ";
    if (sr) p += Rate(sr->fio.read_bytes_per_s) + " read";
    if (sr && sw) p += ", ";
    if (sw) p += Rate(sw->fio.write_bytes_per_s) + " write";
    parts.push_back(p);
  }
  const BenchmarkJobResult* rr = report.Find("randread-direct");
  if (!rr) rr = report.Find("randread");
  const BenchmarkJobResult* rw = report.Find("randwrite");
  if (rr || rw) {
    std::string p = "Random 4K IOPS: ";
    if (rr) p += Grouped(rr->fio.read_iops) + (rr->name == "randread-direct" ? " read (O_DIRECT)" : " read");
    if (rr && rw) p += ", ";
    if (rw) p += Grouped(rw->fio.write_iops) + " write";
    parts.push_back(p);
  }
  if (const BenchmarkJobResult* m = report.Find("metadata"); m && m->metadata) {
    parts.push_back(fmt::format("Metadata: create/stat/delete {}/{}/{} files/s", Grouped(m->metadata->create_per_s()),
                                Grouped(m->metadata->stat_per_s()), Grouped(m->metadata->delete_per_s())));
  }
  for (size_t i = 0; i < parts.size(); ++i) s += parts[i] + (i + 1 < parts.size() ? "; " : "\n");

  // What the data written became.
  std::vector<std::string> reduction;
  if (const auto* j = report.Find("seqwrite-compressible"); j && j->has_space) {
    reduction.push_back(fmt::format("compression {:.2f}x on 50% compressible data", j->compression_ratio()));
  }
  if (const auto* j = report.Find("seqwrite-dedup"); j && j->has_space) {
    reduction.push_back(fmt::format("dedup {:.2f}x on 50% duplicate data", j->dedup_ratio()));
  }
  if (const auto* j = report.Find("treecopy"); j && j->has_space) {
    reduction.push_back(fmt::format("compression {:.2f}x, dedup {:.2f}x on {}", j->compression_ratio(),
                                    j->dedup_ratio(), o.tree));
  }
  if (const auto* j = report.Find("seqwrite"); j && j->has_space) {
    reduction.push_back(fmt::format("{:.2f}x on incompressible data", j->compression_ratio()));
  }
  if (!reduction.empty()) {
    s += "Achieved: ";
    for (size_t i = 0; i < reduction.size(); ++i) s += reduction[i] + (i + 1 < reduction.size() ? "; " : "\n");
  }
  std::string cpu;
  if (double c = report.cpu_s_per_gib_written("seqwrite"); c > 0) cpu += fmt::format("{:.2f} sequentially", c);
  if (double c = report.cpu_s_per_gib_written("rand"); c > 0) {
    cpu += fmt::format("{}{:.2f} in random 4 KiB writes", cpu.empty() ? "" : ", ", c);
  }
  if (cpu.empty() && report.cpu_s_per_gib_written() > 0) cpu = fmt::format("{:.2f}", report.cpu_s_per_gib_written());
  s += fmt::format("Daemon: {}peak RSS {}\n\n", cpu.empty() ? "" : "CPU s per GiB written " + cpu + "; ",
                   FormatSize(report.daemon_peak_rss_bytes));

  // A line per job.
  for (const auto& j : report.jobs) {
    std::string figure;
    if (j.metadata) {
      figure = fmt::format("{} create, {} stat, {} delete files/s", Grouped(j.metadata->create_per_s()),
                           Grouped(j.metadata->stat_per_s()), Grouped(j.metadata->delete_per_s()));
    } else if (j.copy_s > 0) {
      figure = fmt::format("{:.2f} s + {:.2f} s flush ({} files, {})", j.copy_s, j.flush_s,
                           Grouped(static_cast<double>(j.tree_files)), FormatSize(j.tree_bytes));
    } else if (j.name.starts_with("seq")) {
      figure = j.fio.write_bytes > 0 ? Rate(j.fio.write_bytes_per_s) + " write"
                                     : Rate(j.fio.read_bytes_per_s) + " read";
    } else if (j.fio.read_bytes > 0 && j.fio.write_bytes > 0) {
      figure = fmt::format("{} read + {} write IOPS", Grouped(j.fio.read_iops), Grouped(j.fio.write_iops));
    } else {
      figure = j.fio.write_bytes > 0 ? Grouped(j.fio.write_iops) + " IOPS write"
                                     : Grouped(j.fio.read_iops) + " IOPS read";
    }
    std::string extra;
    if (j.bytes_written() > 0) extra += fmt::format("  {:.2f} CPU s/GiB", j.cpu_s_per_gib_written());
    if (j.has_space) {
      extra += fmt::format(", {:.2f}x compression, {:.2f}x dedup", j.compression_ratio(), j.dedup_ratio());
    }
    s += fmt::format("  {:<22} {}{}\n", j.name, figure, extra);
  }
  for (const auto& n : report.notes) s += "Note: " + n + "\n";
  return s;
}

}  // namespace qcfs
