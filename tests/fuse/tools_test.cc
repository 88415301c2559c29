// Ordinary tools against a real mount: cp -a, tar, diff -r, git, sqlite3.
#include <sys/stat.h>

#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/testutil/mounted_volume.h"

namespace qcfs {
namespace {

using testing::MountedVolume;
using testing::Shell;

bool Have(const std::string& tool) { return Shell("command -v " + tool).exit_code == 0; }

nlohmann::json Info(MountedVolume& v) {
  auto r = v.Qcfs("info --json " + v.mnt());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return nlohmann::json::parse(r.output, nullptr, false);
}

TEST(Tools, CopyTreeDiffRemountAndDedupASecondCopy) {
  MountedVolume v(MountedVolume::Options{.size = 2ull << 30});
  const std::string src = "/usr/include";
  auto cp = Shell("cp -a " + src + " " + v.Path("tree"));
  ASSERT_EQ(cp.exit_code, 0) << cp.output;
  auto diff = Shell("diff -r --no-dereference " + src + " " + v.Path("tree"));
  EXPECT_EQ(diff.exit_code, 0) << diff.output.substr(0, 2000);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  diff = Shell("diff -r --no-dereference " + src + " " + v.Path("tree"));
  EXPECT_EQ(diff.exit_code, 0) << diff.output.substr(0, 2000);
  nlohmann::json one = Info(v);
  EXPECT_GT(one["compression_ratio"].get<double>(), 2.0) << one.dump();
  ASSERT_EQ(Shell("cp -a " + src + " " + v.Path("tree2")).exit_code, 0);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  nlohmann::json two = Info(v);
  // A second copy adds references, not data.
  EXPECT_NEAR(two["dedup_ratio"].get<double>(), 2 * one["dedup_ratio"].get<double>(), 0.05) << two.dump();
  EXPECT_EQ(two["stored_bytes"], one["stored_bytes"]);
  ASSERT_EQ(v.Unmount().exit_code, 0);
  auto check = v.Qcfs("check " + v.image());
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST(Tools, TarRoundTripPreservesEverything) {
  MountedVolume v;
  std::string src = v.dir().Join("src");
  ASSERT_EQ(Shell("mkdir -p " + src + "/a/b && echo one > " + src + "/a/f1 && ln " + src + "/a/f1 " + src +
                "/a/b/hard && ln -s ../f1 " + src + "/a/b/soft && mkfifo " + src + "/pipe && head -c 300000 "
                "/dev/urandom > " + src + "/rand && chmod 0751 " + src + "/a && touch -d 2001-02-03 " + src + "/a/f1")
                .exit_code,
            0);
  auto tar = Shell("tar -C " + src + " -cf - . | tar -C " + v.mnt() + " -xpf -");
  ASSERT_EQ(tar.exit_code, 0) << tar.output;
  auto diff = Shell("diff -r --no-dereference -x pipe " + src + " " + v.mnt());
  EXPECT_EQ(diff.exit_code, 0) << diff.output;
  // And back out again, compared as archives listings (modes, owners, times, links).
  auto a = Shell("tar -C " + src + " --sort=name -cvvf /dev/null . | sed 's/  */ /g'");
  auto b = Shell("tar -C " + v.mnt() + " --sort=name -cvvf /dev/null . | sed 's/  */ /g'");
  EXPECT_EQ(a.output, b.output);
}

TEST(Tools, GitRepositoryWorks) {
  if (!Have("git")) GTEST_SKIP() << "git is not installed";
  MountedVolume v;
  std::string repo = v.Path("repo");
  std::string git = "git -C " + repo + " -c user.name=t -c user.email=t@example.com ";
  ASSERT_EQ(Shell("mkdir " + repo + " && git -C " + repo + " init -q").exit_code, 0);
  ASSERT_EQ(Shell("cp -r /usr/include/linux " + repo + "/").exit_code, 0);
  auto add = Shell(git + "add -A && " + git + "commit -qm first");
  ASSERT_EQ(add.exit_code, 0) << add.output;
  ASSERT_EQ(Shell("echo change >> " + repo + "/linux/fs.h && " + git + "commit -qam second").exit_code, 0);
  auto fsck = Shell(git + "fsck --full --strict");
  EXPECT_EQ(fsck.exit_code, 0) << fsck.output;
  auto log = Shell(git + "log --oneline");
  EXPECT_NE(log.output.find("second"), std::string::npos);
  auto gc = Shell(git + "gc -q && " + git + "fsck --full");
  EXPECT_EQ(gc.exit_code, 0) << gc.output;
}

TEST(Tools, SqliteIntegrityCheck) {
  if (!Have("sqlite3")) GTEST_SKIP() << "sqlite3 is not installed";
  MountedVolume v;
  std::string db = v.Path("test.db");
  std::string sql =
      "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<20000) "
      "INSERT INTO t(v) SELECT hex(randomblob(64)) FROM c;"
      "UPDATE t SET v = upper(v) WHERE id % 3 = 0; DELETE FROM t WHERE id % 7 = 0; VACUUM;";
  auto r = Shell("sqlite3 " + db + " \"" + sql + "\"");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(v.Unmount().exit_code, 0);
  ASSERT_EQ(v.Mount().exit_code, 0);
  auto check = Shell("sqlite3 " + db + " 'PRAGMA integrity_check; SELECT count(*) FROM t;'");
  EXPECT_EQ(check.output, "ok\n17143\n");
}

}  // namespace
}  // namespace qcfs
