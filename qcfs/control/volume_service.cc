#include "qcfs/control/volume_service.h"

#include <unistd.h>

namespace qcfs {
namespace {

nlohmann::json ErrorJson(const Status& s) { return {{"error", s.ToString()}, {"errno", s.code()}}; }

double Ratio(uint64_t a, uint64_t b) { return b == 0 ? 1.0 : static_cast<double>(a) / static_cast<double>(b); }

}  // namespace

nlohmann::json VolumeInfoJson(const VolumeInfo& info) {
  const StoreUsage& u = info.usage;
  return {
      {"device", info.device},
      {"metadata_dir", info.meta_dir},
      {"uuid", info.uuid},
      {"chunk_size", info.chunk_size},
      {"compression", info.compression},
      {"logical_bytes", u.stats.referenced_bytes},
      {"unique_bytes", u.stats.unique_bytes},
      {"stored_bytes", u.stats.stored_bytes},
      {"compression_ratio", Ratio(u.stats.unique_bytes, u.stats.stored_bytes)},
      {"dedup_ratio", Ratio(u.stats.referenced_bytes, u.stats.unique_bytes)},
      {"data_reduction", Ratio(u.stats.referenced_bytes, u.stats.stored_bytes)},
      {"capacity_bytes", u.capacity_bytes},
      {"free_bytes", u.available_bytes},
      {"buffered_bytes", info.dirty_bytes},
      {"metadata_bytes", info.meta_bytes},
      {"files", info.files},
      {"chunks", u.stats.chunks},
      {"segments",
       {{"total", u.segment_count},
        {"free", u.free_segments},
        {"pending_free", u.pending_segments},
        {"used", u.segment_count - u.free_segments - u.pending_segments},
        {"size", u.segment_size}}},
  };
}

nlohmann::json ServeVolumeRequest(Volume* volume, const nlohmann::json& request) {
  std::string op = request.value("op", "");
  if (op == "ping") return {{"ok", true}, {"pid", ::getpid()}};
  if (op == "info") {
    auto info = volume->Info();
    if (!info.ok()) return ErrorJson(info.status());
    return VolumeInfoJson(*info);
  }
  if (op == "sync") {
    Status s = volume->Sync();
    if (!s.ok()) return ErrorJson(s);
    return {{"ok", true}};
  }
  return {{"error", "unknown request '" + op + "'"}, {"errno", EINVAL}};
}

}  // namespace qcfs
