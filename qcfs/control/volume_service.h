// What a running mount answers on its control channel, and the JSON form
// of volume information shared by online and offline `qcfs info`.
#pragma once

#include <nlohmann/json.hpp>

#include "qcfs/fs/volume.h"

namespace qcfs {

// {"device", "uuid", "logical_bytes", "unique_bytes", "stored_bytes",
//  "compression_ratio", "dedup_ratio", "capacity_bytes", "free_bytes",
//  "files", "chunks", "segments": {...}, ...}
nlohmann::json VolumeInfoJson(const VolumeInfo& info);

nlohmann::json SnapshotInfoJson(const SnapshotInfo& info);
// `chunks` adds the changed byte ranges of each entry.
nlohmann::json SnapshotDiffJson(const SnapshotDiff& diff, bool chunks);

// Handles one control request: {"op": "info"}, {"op": "sync"}, {"op": "ping"},
// {"op": "snapshot-create"|"snapshot-delete"|"snapshot-restore", "name": N},
// {"op": "snapshot-list", "exclusive": bool},
// {"op": "snapshot-diff", "from": A, "to": B or "", "chunks": bool}.
// Errors come back as {"error": "...", "errno": N}.
nlohmann::json ServeVolumeRequest(Volume* volume, const nlohmann::json& request);

}  // namespace qcfs
