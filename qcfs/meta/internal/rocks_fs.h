// A rocksdb::FileSystem over MetaFs: how the metadata database lives on the
// device. Internal to the meta layer (MetaDb uses it).
#pragma once

#include <memory>
#include <string>

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include "qcfs/meta/metafs.h"

namespace qcfs::internal {

// Files under `db_path` ("/qcfs-meta/000012.sst") are MetaFs files named
// by their last component. REQUIRES: `fs` outlives the returned object.
std::shared_ptr<rocksdb::FileSystem> NewMetaFsFileSystem(MetaFs* fs, const std::string& db_path);

// Sends RocksDB's informational log to ours (warnings and errors only).
std::shared_ptr<rocksdb::Logger> NewRocksLogger();

}  // namespace qcfs::internal
