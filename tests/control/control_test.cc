#include "qcfs/control/control.h"

#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/testutil/temp_dir.h"

namespace qcfs {
namespace {

using testing::TempDir;

TEST(Control, AnswersRequestsAsJson) {
  TempDir dir;
  auto server = ControlServer::Start(dir.Join("c.sock"), ::getuid(), [](const nlohmann::json& r) {
    return nlohmann::json{{"echo", r.value("op", "")}};
  });
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto r = ControlCall(dir.Join("c.sock"), {{"op", "info"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["echo"], "info");
  struct stat st {};
  ASSERT_EQ(::stat(dir.Join("c.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "only the owner may connect";
}

TEST(Control, ErrorsComeBackAsStatus) {
  TempDir dir;
  auto server = ControlServer::Start(dir.Join("c.sock"), ::getuid(), [](const nlohmann::json&) {
    return nlohmann::json{{"error", "volume is busy"}, {"errno", EBUSY}};
  });
  ASSERT_TRUE(server.ok());
  auto r = ControlCall(dir.Join("c.sock"), {{"op", "sync"}});
  EXPECT_EQ(r.status().code(), EBUSY);
  EXPECT_EQ(r.status().message(), "volume is busy");
}

TEST(Control, RefusesOtherUsers) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as another user";
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  std::string sock = dir.Join("c.sock");
  auto server = ControlServer::Start(sock, 0, [](const nlohmann::json&) { return nlohmann::json{{"ok", true}}; });
  ASSERT_TRUE(server.ok());
  ::chmod(sock.c_str(), 0666);  // even with the socket open to all, the server checks the peer
  pid_t child = ::fork();
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) _exit(2);
    auto r = ControlCall(sock, {{"op", "info"}});
    _exit(!r.ok() && r.status().code() == EACCES ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// A killed daemon's main thread is a zombie before its other threads have
// exited and let go of the volume: until then it is still running (qcfs
// umount and the tests that kill daemons wait on this before touching the
// volume, which a still-exiting thread keeps locked).
TEST(Control, AProcessWhoseLeaderExitedRunsUntilItsLastThreadEnds) {
  int release[2];
  ASSERT_EQ(::pipe(release), 0);
  pid_t child = ::fork();
  if (child == 0) {
    std::thread([&] {
      char c;
      (void)!::read(release[0], &c, 1);
      _exit(0);
    }).detach();
    ::syscall(SYS_exit, 0);  // the leader alone exits first (no unwinding)
  }
  auto state = [&] {
    std::ifstream in("/proc/" + std::to_string(child) + "/stat");
    std::string stat;
    std::getline(in, stat);
    auto close = stat.rfind(')');
    return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
  };
  while (state() != 'Z') std::this_thread::yield();  // the leader has exited
  EXPECT_TRUE(ProcessRunning(child)) << "a thread of it still runs";
  ASSERT_EQ(::write(release[1], "x", 1), 1);
  int status;
  ASSERT_EQ(::waitid(P_PID, child, nullptr, WEXITED | WNOWAIT), 0);  // ended, not reaped yet
  EXPECT_FALSE(ProcessRunning(child));
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ::close(release[0]);
  ::close(release[1]);
}

TEST(Control, MountRecordsOfDeadDaemonsAreIgnored) {
  TempDir dir;
  ::setenv("QCFS_RUNTIME_DIR", dir.path().c_str(), 1);
  MountRecord live{::getpid(), "/dev/x", "/mnt/live", dir.Join("a.sock"), "u", 0};
  MountRecord dead{999999, "/dev/y", "/mnt/dead", dir.Join("b.sock"), "u", 0};
  ASSERT_TRUE(RegisterMount(live).ok());
  ASSERT_TRUE(RegisterMount(dead).ok());
  auto mounts = ListMounts();
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].mountpoint, "/mnt/live");
  EXPECT_TRUE(FindMount("/dev/x").has_value());
  EXPECT_FALSE(FindMount("/mnt/dead").has_value());
  ::unsetenv("QCFS_RUNTIME_DIR");
}

}  // namespace
}  // namespace qcfs
