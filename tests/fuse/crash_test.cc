// SIGKILL of the daemon during fsync-heavy writes: after a remount every
// fsync'd file holds exactly its content and qcfs check is clean.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <gtest/gtest.h>

#include "qcfs/core/fingerprint.h"
#include "tests/testutil/mounted_volume.h"

namespace qcfs {
namespace {

using testing::MountedVolume;
using testing::RandomBytes;
using testing::ReadFile;

bool WriteDurably(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) return false;
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) && ::fsync(fd) == 0;
  return ::close(fd) == 0 && ok;
}

std::string Hash(const std::string& data) {
  return Fingerprint::Of(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()))
      .Hex();
}

// The workload: files of random sizes written and fsync'd, renames over
// existing files, one large file growing by fsync'd appends. The manifest
// (itself fsync'd) gets "W name" before a file is touched and "D name size
// hash" once its new state is durable. Runs until the mount dies.
[[noreturn]] void Workload(const std::string& mnt, const std::string& manifest, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::ofstream log(manifest, std::ios::app);
  int mfd = ::open(manifest.c_str(), O_WRONLY | O_APPEND);
  auto intent = [&](const std::string& name) {
    log << "W " << name << " 0 -\n";
    log.flush();
    ::fsync(mfd);
  };
  auto record = [&](const std::string& name, const std::string& data) {
    log << "D " << name << " " << data.size() << " " << Hash(data) << "\n";
    log.flush();
    ::fsync(mfd);
  };
  ::mkdir((mnt + "/d").c_str(), 0755);
  std::string big;
  for (int i = 0;; ++i) {
    std::string name = "d/f" + std::to_string(rng() % 64);
    std::string data = RandomBytes(rng() % (300 << 10), rng(), rng() % 2 == 0);
    intent(name);
    if (rng() % 4 == 0) {
      // Atomic replace: write a temp file durably, rename it over the target, sync the directory.
      std::string tmp = mnt + "/d/tmp" + std::to_string(i);
      if (!WriteDurably(tmp, data)) _exit(0);
      if (::rename(tmp.c_str(), (mnt + "/" + name).c_str()) != 0) _exit(0);
      int dfd = ::open((mnt + "/d").c_str(), O_RDONLY | O_DIRECTORY);
      if (dfd < 0 || ::fsync(dfd) != 0) _exit(0);
      ::close(dfd);
    } else if (!WriteDurably(mnt + "/" + name, data)) {
      _exit(0);
    }
    record(name, data);
    if (i % 5 == 0) {
      std::string more = RandomBytes(rng() % (200 << 10), rng());
      intent("big");
      int fd = ::open((mnt + "/big").c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644);
      if (fd < 0 || ::write(fd, more.data(), more.size()) != static_cast<ssize_t>(more.size()) || ::fsync(fd) != 0) {
        _exit(0);
      }
      ::close(fd);
      big += more;
      record("big", big);
    }
  }
}

TEST(Crash, SigkillDuringFsyncHeavyWritesLosesNothingFsynced) {
  MountedVolume v(MountedVolume::Options{.size = 2ull << 30});
  const int iterations = std::getenv("QCFS_CRASH_ITERATIONS") ? std::atoi(std::getenv("QCFS_CRASH_ITERATIONS")) : 4;
  std::mt19937_64 rng(42);
  for (int it = 0; it < iterations; ++it) {
    std::string manifest = v.dir().Join("manifest" + std::to_string(it));
    ::close(::open(manifest.c_str(), O_CREAT | O_WRONLY, 0644));
    pid_t child = ::fork();
    if (child == 0) Workload(v.mnt(), manifest, rng());
    ::usleep(static_cast<useconds_t>(300000 + rng() % 900000));
    v.KillDaemon();
    int status;
    ::waitpid(child, &status, 0);

    auto check = v.Qcfs("check " + v.image());
    ASSERT_EQ(check.exit_code, 0) << "iteration " << it << ": " << check.output;
    ASSERT_EQ(v.Mount().exit_code, 0);
    // The last durable state of every file in the manifest; files being
    // rewritten at the crash may hold anything between old and new, but the
    // appended file must still start with everything fsync'd before.
    std::map<std::string, std::pair<size_t, std::string>> want;
    std::map<std::string, bool> in_flight;
    std::ifstream in(manifest);
    std::string kind, name, hash;
    size_t size;
    while (in >> kind >> name >> size >> hash) {
      if (kind == "W") {
        in_flight[name] = true;
      } else {
        in_flight[name] = false;
        want[name] = {size, hash};
      }
    }
    ASSERT_FALSE(want.empty()) << "the workload made no progress";
    int verified = 0;
    for (auto& [file, expect] : want) {
      std::string data = ReadFile(v.Path(file));
      if (in_flight[file] && file != "big") continue;
      if (in_flight[file]) {
        ASSERT_GE(data.size(), expect.first) << "iteration " << it << ": fsync'd appends lost";
        data.resize(expect.first);
      }
      EXPECT_EQ(data.size(), expect.first) << "iteration " << it << ": " << file;
      EXPECT_EQ(Hash(data), expect.second) << "iteration " << it << ": " << file;
      ++verified;
    }
    EXPECT_GT(verified, 0);
    // Later iterations start from this state.
    std::string rm = "rm -f " + v.Path("big");
    ASSERT_EQ(testing::Shell(rm).exit_code, 0);
  }
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

}  // namespace
}  // namespace qcfs
