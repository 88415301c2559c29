// The pieces of `qcfs benchmark` that need no mount: fio's JSON, job lists,
// the built-in job files, the metadata job on a plain directory, process
// usage, the summary. tests/tools/benchmark_test.sh runs it on a mount.
#include "cli/benchmark.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/testutil/temp_dir.h"

namespace qcfs {
namespace {

// What fio 3.33 prints for a group_reporting run, trimmed, after a warning.
constexpr const char* kFioOutput = R"(fio: note: both iodepth >= 1 and synchronous I/O engine are selected
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "randrw",
      "error" : 0,
      "read" : {"io_bytes" : 409600, "bw_bytes" : 81920, "iops" : 20.5, "runtime" : 5000},
      "write" : {"io_bytes" : 40960, "bw_bytes" : 8192, "iops" : 2.0, "runtime" : 5100}
    }
  ]
})";

TEST(FioJson, ReadsBandwidthIopsBytesAndRuntime) {
  auto r = ParseFioJson(kFioOutput);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->read_bytes, 409600u);
  EXPECT_EQ(r->write_bytes, 40960u);
  EXPECT_DOUBLE_EQ(r->read_bytes_per_s, 81920);
  EXPECT_DOUBLE_EQ(r->write_bytes_per_s, 8192);
  EXPECT_DOUBLE_EQ(r->read_iops, 20.5);
  EXPECT_DOUBLE_EQ(r->write_iops, 2.0);
  EXPECT_DOUBLE_EQ(r->runtime_s, 5.1);
}

TEST(FioJson, SumsJobsReportedSeparately) {
  auto r = ParseFioJson(R"({"jobs": [
      {"jobname": "a", "error": 0, "read": {"io_bytes": 10, "bw_bytes": 1, "iops": 1, "runtime": 100},
       "write": {"io_bytes": 0, "bw_bytes": 0, "iops": 0, "runtime": 0}},
      {"jobname": "b", "error": 0, "read": {"io_bytes": 30, "bw_bytes": 3, "iops": 2, "runtime": 300},
       "write": {"io_bytes": 0, "bw_bytes": 0, "iops": 0, "runtime": 0}}]})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->read_bytes, 40u);
  EXPECT_DOUBLE_EQ(r->read_iops, 3);
  EXPECT_DOUBLE_EQ(r->runtime_s, 0.3);
}

TEST(FioJson, RefusesAFailedJobAndOutputThatIsNotARun) {
  auto failed = ParseFioJson(R"({"jobs": [{"jobname": "x", "error": 5, "read": {}, "write": {}}]})");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), EIO);
  EXPECT_NE(failed.status().message().find("error 5"), std::string::npos);
  EXPECT_EQ(ParseFioJson("fio: no such file").status().code(), EINVAL);
  EXPECT_EQ(ParseFioJson("{\"jobs\": [").status().code(), EINVAL);
  EXPECT_EQ(ParseFioJson("{\"jobs\": []}").status().code(), EINVAL);
}

TEST(JobList, KeepsSuiteOrderAndRefusesUnknownNames) {
  auto jobs = ParseJobList("randwrite,seqwrite,,randwrite");
  ASSERT_TRUE(jobs.ok()) << jobs.status().ToString();
  EXPECT_EQ(*jobs, (std::vector<std::string>{"seqwrite", "randwrite"}));
  auto bad = ParseJobList("seqwrite,fast");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown job 'fast'"), std::string::npos);
  EXPECT_NE(bad.status().message().find("treecopy"), std::string::npos);  // lists the jobs
  EXPECT_FALSE(ParseJobList(",").ok());
}

TEST(FioJobs, EveryFioJobOfTheSuiteIsBuiltIn) {
  for (const auto& name : BenchmarkJobNames()) {
    if (name == "metadata" || name == "treecopy") continue;
    auto text = FioJobText(name);
    ASSERT_TRUE(text.has_value()) << name;
    EXPECT_NE(text->find("[" + name + "]"), std::string_view::npos) << name;
    EXPECT_NE(text->find("directory=${QCFS_BENCH_DIR}"), std::string_view::npos) << name;
  }
  EXPECT_EQ(FioJobNames().size(), BenchmarkJobNames().size() - 2);
  EXPECT_FALSE(FioJobText("metadata").has_value());
}

TEST(MetadataBench, CreatesStatsAndDeletesEveryFile) {
  testing::TempDir dir;
  MetadataBenchOptions o;
  o.files = 250;
  o.files_per_dir = 20;  // 13 leaves under 2 parents
  o.file_size = 100;
  o.drop_caches = false;
  auto r = RunMetadataBench(dir.path(), o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->files, 250u);
  EXPECT_EQ(r->directories, 15u);
  EXPECT_GT(r->create_per_s(), 0);
  EXPECT_GT(r->stat_per_s(), 0);
  EXPECT_GT(r->delete_per_s(), 0);
  EXPECT_FALSE(r->caches_dropped);
  EXPECT_FALSE(std::filesystem::exists(dir.Join("meta")));
  auto j = MetadataBenchJson(*r);
  EXPECT_EQ(j["files"], 250);
  EXPECT_TRUE(j.contains("create_per_s") && j.contains("stat_per_s") && j.contains("delete_per_s"));
}

TEST(MetadataBench, RefusesToRunOverAnEarlierRun) {
  testing::TempDir dir;
  ASSERT_EQ(::mkdir(dir.Join("meta").c_str(), 0755), 0);
  auto r = RunMetadataBench(dir.path(), MetadataBenchOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), EEXIST);
}

TEST(MetadataBench, CancelledRunLeavesNothingBehind) {
  testing::TempDir dir;
  std::atomic<bool> cancel{true};
  MetadataBenchOptions o;
  o.files = 1000;
  o.cancel = &cancel;
  o.drop_caches = false;
  auto r = RunMetadataBench(dir.path(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ECANCELED);
  EXPECT_FALSE(std::filesystem::exists(dir.Join("meta")));
}

TEST(ProcessUsage, ReadsThisProcess) {
  auto u = ReadProcessUsage(::getpid());
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_GE(u->cpu_s, 0);
  EXPECT_GT(u->peak_rss_bytes, 0u);
  EXPECT_FALSE(ReadProcessUsage(0x7ffffff0).ok());
}

TEST(Executables, FoundOnPath) {
  EXPECT_TRUE(FindExecutable("sh").has_value());
  EXPECT_FALSE(FindExecutable("qcfs-no-such-tool").has_value());
}

TEST(Benchmark, RefusesADirectoryThatIsNotAQcfsMount) {
  testing::TempDir dir;
  BenchmarkOptions o;
  o.mountpoint = dir.path();
  auto r = RunBenchmark(o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), EINVAL);
  EXPECT_NE(r.status().message().find("is not a mounted QCFS volume"), std::string::npos);
}

TEST(Benchmark, SummaryLeadsWithSequentialRandomAndMetadata) {
  BenchmarkReport report;
  report.mountpoint = "/mnt/data";
  report.options = BenchmarkOptions::Quick();
  auto job = [&](const char* name) -> BenchmarkJobResult& {
    report.jobs.emplace_back();
    report.jobs.back().name = name;
    return report.jobs.back();
  };
  BenchmarkJobResult& sw = job("seqwrite");
  sw.fio.write_bytes_per_s = 800.0 * (1 << 20);
  sw.fio.write_bytes = 1ull << 30;
  sw.daemon_cpu_s = 2;
  job("seqread").fio.read_bytes_per_s = 1200.0 * (1 << 20);
  job("randread-direct").fio.read_iops = 52000;
  job("randwrite").fio.write_iops = 40000;
  BenchmarkJobResult& comp = job("seqwrite-compressible");
  comp.has_space = true;
  comp.logical_bytes = comp.unique_bytes = 200;
  comp.stored_bytes = 100;
  BenchmarkJobResult& meta = job("metadata");
  meta.metadata = MetadataBenchResult{};
  meta.metadata->files = 3000;
  meta.metadata->create_s = 1;
  meta.metadata->stat_s = 0.25;
  meta.metadata->delete_s = 0.5;
  std::string s = BenchmarkSummary(report);
  EXPECT_NE(s.find("Sequential: 1,200 MiB/s read, 800 MiB/s write; Random 4K IOPS: 52,000 read (O_DIRECT), 40,000 "
                   "write; Metadata: create/stat/delete 3,000/12,000/6,000 files/s"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("compression 2.00x on 50% compressible data"), std::string::npos) << s;
  EXPECT_NE(s.find("CPU s per GiB written 2.00 sequentially"), std::string::npos) << s;
  auto j = BenchmarkJson(report);
  EXPECT_EQ(j["jobs"].size(), 6u);
  EXPECT_DOUBLE_EQ(j["daemon"]["cpu_s_per_gib_written"].get<double>(), 2.0);
}

}  // namespace
}  // namespace qcfs
