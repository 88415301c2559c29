#include "qcfs/control/volume_service.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include "qcfs/control/control.h"

namespace qcfs {
namespace {

nlohmann::json ErrorJson(const Status& s) { return {{"error", s.ToString()}, {"errno", s.code()}}; }

double Ratio(uint64_t a, uint64_t b) { return b == 0 ? 1.0 : static_cast<double>(a) / static_cast<double>(b); }

}  // namespace

nlohmann::json VolumeInfoJson(const VolumeInfo& info) {
  const StoreUsage& u = info.usage;
  return {
      {"device", info.device},
      {"uuid", info.uuid},
      {"device_bytes", info.device_bytes},
      {"chunk_size", info.chunk_size},
      {"compression", info.compression},
      {"logical_bytes", u.stats.referenced_bytes - std::min(u.stats.referenced_bytes, u.stats.history_bytes)},
      {"snapshot_only_bytes", u.stats.history_bytes},
      {"snapshots", info.snapshots},
      {"unique_bytes", u.stats.unique_bytes},
      {"stored_bytes", u.stats.stored_bytes},
      {"compression_ratio", Ratio(u.stats.unique_bytes, u.stats.stored_bytes)},
      {"dedup_ratio", Ratio(u.stats.referenced_bytes, u.stats.unique_bytes)},
      {"data_reduction", Ratio(u.stats.referenced_bytes, u.stats.stored_bytes)},
      {"capacity_bytes", u.capacity_bytes},
      {"free_bytes", u.available_bytes},
      {"buffered_bytes", info.dirty_bytes},
      {"metadata_bytes", info.meta_bytes},
      {"metadata_segments", info.meta_segments},
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

nlohmann::json ScrubStatusJson(const ScrubStatus& s) {
  const char* state = s.state == ScrubStatus::State::kRunning     ? "running"
                      : s.state == ScrubStatus::State::kDone      ? "done"
                      : s.state == ScrubStatus::State::kCancelled ? "cancelled"
                      : s.state == ScrubStatus::State::kFailed    ? "failed"
                                                                  : "idle";
  nlohmann::json damaged = nlohmann::json::array();
  for (const auto& d : s.damaged) damaged.push_back({{"chunk", d.chunk}, {"detail", d.detail}, {"paths", d.paths}});
  return {{"state", state},
          {"full", s.full},
          {"chunks_total", s.chunks_total},
          {"chunks_done", s.chunks_done},
          {"bytes_done", s.bytes_done},
          {"started_ns", s.started_ns},
          {"finished_ns", s.finished_ns},
          {"failure", s.error},  // not "error": that key means the request failed
          {"damaged", damaged}};
}

nlohmann::json SnapshotInfoJson(const SnapshotInfo& info) {
  nlohmann::json j = {{"id", info.id},
                      {"name", info.name},
                      {"created_ns", info.created_ns},
                      {"logical_bytes", info.logical_bytes},
                      {"files", info.files}};
  if (info.exclusive_bytes) j["exclusive_bytes"] = *info.exclusive_bytes;
  return j;
}

nlohmann::json SnapshotDiffJson(const SnapshotDiff& diff, bool chunks) {
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& e : diff.entries) {
    const char* kind = e.kind == SnapshotDiff::Entry::Kind::kAdded     ? "added"
                       : e.kind == SnapshotDiff::Entry::Kind::kDeleted ? "deleted"
                       : e.kind == SnapshotDiff::Entry::Kind::kRenamed ? "renamed"
                                                                       : "modified";
    nlohmann::json j = {{"kind", kind}, {"path", e.path}, {"ino", e.ino}, {"type", S_ISDIR(e.mode) ? "dir" : "file"}};
    if (!e.old_path.empty()) j["old_path"] = e.old_path;
    if (e.data) j["data_changed"] = true;
    if (chunks) {
      nlohmann::json ranges = nlohmann::json::array();
      for (auto& [start, end] : e.ranges) ranges.push_back({start, end});
      j["ranges"] = ranges;
    }
    entries.push_back(j);
  }
  return {{"from", diff.from}, {"to", diff.to.empty() ? nlohmann::json(nullptr) : nlohmann::json(diff.to)},
          {"changes", entries}, {"changed_inodes", diff.inodes.size()}, {"journal_keys", diff.journal_keys}};
}

namespace {
nlohmann::json Serve(Volume* volume, const nlohmann::json& request);
}  // namespace

nlohmann::json ServeVolumeRequest(Volume* volume, const nlohmann::json& request) {
  // Answers carry the time spent in the volume, without transport or startup.
  auto start = std::chrono::steady_clock::now();
  nlohmann::json answer = Serve(volume, request);
  if (answer.is_object() && !answer.contains("error")) {
    answer["elapsed_us"] =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
  }
  return answer;
}

namespace {

nlohmann::json Serve(Volume* volume, const nlohmann::json& request) {
  std::string op = request.value("op", "");
  std::string name = request.value("name", "");
  if (op == "snapshot-create") {
    auto r = volume->CreateSnapshot(name);
    if (!r.ok()) return ErrorJson(r.status());
    return SnapshotInfoJson(*r);
  }
  if (op == "snapshot-list") {
    auto r = volume->ListSnapshots(request.value("exclusive", false));
    if (!r.ok()) return ErrorJson(r.status());
    nlohmann::json list = nlohmann::json::array();
    for (const auto& s : *r) list.push_back(SnapshotInfoJson(s));
    return {{"snapshots", list}};
  }
  if (op == "snapshot-delete") {
    Status s = volume->DeleteSnapshot(name);
    if (!s.ok()) return ErrorJson(s);
    return {{"ok", true}};
  }
  if (op == "snapshot-restore") {
    auto r = volume->RestoreSnapshot(name);
    if (!r.ok()) return ErrorJson(r.status());
    return {{"ok", true}, {"saved_as", *r}};
  }
  if (op == "snapshot-diff") {
    auto r = volume->Diff(request.value("from", ""), request.value("to", ""));
    if (!r.ok()) return ErrorJson(r.status());
    return SnapshotDiffJson(*r, request.value("chunks", false));
  }
  if (op == "ping") return {{"ok", true}, {"pid", ::getpid()}};
  if (op == "info") {
    auto info = volume->Info();
    if (!info.ok()) return ErrorJson(info.status());
    return VolumeInfoJson(*info);
  }
  if (op == "trim") {
    auto start = std::chrono::steady_clock::now();
    auto r = volume->Trim();
    if (!r.ok()) return ErrorJson(r.status());
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
    return {{"trimmed_bytes", r->trimmed_bytes}, {"segments_cleaned", r->segments_cleaned}, {"elapsed_us", us}};
  }
  if (op == "resize") {
    constexpr int64_t kMax = int64_t{1} << 60;  // far beyond any device
    auto size = JsonInt(request, "size", 0, 0, kMax);
    auto by = JsonInt(request, "grow_by", 0, 0, kMax);
    if (!size || !by) return ErrorJson(Status::Error(EINVAL, "resize: size and grow_by must be byte counts"));
    if (*by != 0) size = static_cast<int64_t>(volume->superblock().device_size) + *by;
    auto r = volume->Resize(static_cast<uint64_t>(*size));
    if (!r.ok()) return ErrorJson(r.status());
    auto info = volume->Info();
    return {{"old_bytes", r->old_bytes},
            {"new_bytes", r->new_bytes},
            {"old_segments", r->old_segments},
            {"new_segments", r->new_segments},
            {"capacity_bytes", info.ok() ? info->usage.capacity_bytes : 0},
            {"free_bytes", info.ok() ? info->usage.available_bytes : 0}};
  }
  if (op == "scrub-start") {
    Status s = volume->StartScrub(request.value("full", false));
    if (!s.ok()) return ErrorJson(s);
    return ScrubStatusJson(volume->scrub_status());
  }
  if (op == "scrub-status") return ScrubStatusJson(volume->scrub_status());
  if (op == "scrub-cancel") {
    volume->CancelScrub();
    return ScrubStatusJson(volume->scrub_status());
  }
  if (op == "sync") {
    Status s = volume->Sync();
    if (!s.ok()) return ErrorJson(s);
    return {{"ok", true}};
  }
  return {{"error", "unknown request '" + op + "'"}, {"errno", EINVAL}};
}

}  // namespace

}  // namespace qcfs
