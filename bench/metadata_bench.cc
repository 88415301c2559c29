// metadata_bench DIR: the metadata job of bench/compare.sh on any file
// system. Creates small files in nested directories under DIR/meta, syncs,
// drops the kernel's caches (as root), stats every file, deletes them all,
// and prints the rate of each phase in files per second (one thread).
//
//   metadata_bench /mnt/data --files 20000 --json
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "cli/benchmark.h"

int main(int argc, char** argv) {
  CLI::App app{"Create, stat (cold) and delete small files in nested directories; files per second of each phase",
               "metadata_bench"};
  std::string dir;
  qcfs::MetadataBenchOptions o;
  bool json = false, warm = false;
  app.add_option("dir", dir, "Directory to work in (the job uses DIR/meta)")->required();
  app.add_option("--files", o.files, "Number of files (default 20000)");
  app.add_option("--file-size", o.file_size, "Bytes written to each file (default 1024)");
  app.add_option("--files-per-dir", o.files_per_dir, "Files per leaf directory (default 200)");
  app.add_flag("--warm", warm, "Do not drop the kernel's caches before the stat phase");
  app.add_flag("--json", json, "Machine-readable output");
  CLI11_PARSE(app, argc, argv);
  o.drop_caches = !warm;

  auto r = qcfs::RunMetadataBench(dir, o);
  if (!r.ok()) {
    fmt::print(stderr, "metadata_bench: {}\n", r.status().ToString());
    return 1;
  }
  if (json) {
    fmt::print("{}\n", qcfs::MetadataBenchJson(*r).dump());
  } else {
    fmt::print("{} files of {} bytes in {} directories: create {:.0f}/s, stat {:.0f}/s{}, delete {:.0f}/s "
               "(sync after create {:.2f} s)\n",
               r->files, r->file_size, r->directories, r->create_per_s(), r->stat_per_s(),
               r->caches_dropped ? " (cold)" : " (warm)", r->delete_per_s(), r->sync_s);
  }
  return 0;
}
