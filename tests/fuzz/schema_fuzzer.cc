// Every decoder of the metadata schema (qcfs/meta/schema.h) on any bytes,
// and the versioned writes of fs/internal/versioned.h on any old value.
//
// Input: u8 selector, then the bytes. Whatever a decoder accepts must
// encode to bytes that decode to the same record (the encoding is a fixed
// point after one round).
#include <optional>
#include <string>
#include <vector>

#include <rocksdb/write_batch.h>

#include "qcfs/fs/internal/versioned.h"
#include "qcfs/meta/schema.h"
#include "tests/fuzz/fuzz_util.h"

namespace qcfs {
namespace {

using namespace schema;

template <typename Record>
void RoundTrip(std::string_view in) {
  Record r;
  if (!Record::Decode(in, &r)) return;
  std::string once;
  r.EncodeTo(&once);
  Record again;
  QCFS_FUZZ_CHECK(Record::Decode(once, &again), "an encoded record does not decode");
  std::string twice;
  again.EncodeTo(&twice);
  QCFS_FUZZ_CHECK(once == twice, "Encode then Decode changes a record");
}

void History(std::string_view in) {
  uint64_t died = 0;
  std::string_view value;
  if (DecodeHistory(in, &died, &value)) {
    std::string out;
    EncodeHistory(died, value, &out);
    uint64_t died2 = 0;
    std::string_view value2;
    QCFS_FUZZ_CHECK(DecodeHistory(out, &died2, &value2) && died2 == died && value2 == value,
                    "history value does not survive Encode and Decode");
  }
  std::string_view key;
  uint64_t epoch = 0;
  if (ParseHistoryKey(in, &key, &epoch)) {
    QCFS_FUZZ_CHECK(HistoryKey(key, epoch) == in, "HistoryKey of a parsed history key differs from it");
    QCFS_FUZZ_CHECK(HistoryKey(key, epoch).starts_with(HistoryPrefix(key)), "a history key lacks its prefix");
  }
  uint64_t born = 0;
  ValueEpoch(in, &born);
}

void Suffixes(std::string_view in) {
  uint64_t v64 = 0;
  if (ParseU64Suffix(in, &v64)) QCFS_FUZZ_CHECK(InodeKey(v64).substr(1) == in, "u64 key suffix round trip");
  uint32_t v32 = 0;
  if (ParseU32Suffix(in, &v32)) QCFS_FUZZ_CHECK(SegmentKey(v32).substr(1) == in, "u32 key suffix round trip");
}

// Collects what a batch holds.
struct Collect : rocksdb::WriteBatch::Handler {
  std::vector<std::pair<std::string, std::string>> puts;
  std::vector<std::string> deletes;
  void Put(const rocksdb::Slice& k, const rocksdb::Slice& v) override { puts.emplace_back(k.ToString(), v.ToString()); }
  void Delete(const rocksdb::Slice& k) override { deletes.push_back(k.ToString()); }
};

// Input: u8 current epoch, u8 newest snapshot, u8 key length, key, u8 old
// present, u8 delete, then the old value (the new one is "epoch | rest").
void Versioned(fuzz::Input in) {
  internal::Epochs epochs;
  epochs.current = 1 + in.U8();
  epochs.latest_snapshot = in.U8();
  std::string key(in.Bytes(in.U8()));
  bool present = in.U8() & 1;
  bool erase = in.U8() & 1;
  std::optional<std::string> old;
  if (present) old.emplace(in.Rest());
  std::string value;
  Encoder(&value).Varint(epochs.current);
  value.append("v");

  rocksdb::WriteBatch batch;
  // Never reads the database: the old value is given.
  internal::VersionedBatch vb(nullptr, &batch, epochs);
  Result<bool> kept = erase ? vb.Delete(key, &old) : vb.Put(key, value, &old);
  if (!kept.ok()) {
    QCFS_FUZZ_CHECK(old.has_value() && epochs.latest_snapshot != 0, "a versioned write fails without an old version");
    return;
  }
  Collect c;
  if (!batch.Iterate(&c).ok()) std::abort();
  if (*kept) {
    // The old version is kept under its history key, stamped with when it died.
    uint64_t born = 0;
    QCFS_FUZZ_CHECK(ValueEpoch(*old, &born), "kept a version without an epoch");
    bool found = false;
    for (auto& [k, v] : c.puts) {
      if (k != HistoryKey(key, born)) continue;
      uint64_t died = 0;
      std::string_view kept_value;
      found = DecodeHistory(v, &died, &kept_value) && died == epochs.current && kept_value == *old;
    }
    QCFS_FUZZ_CHECK(found, "a kept version is missing from the batch");
  }
}

}  // namespace
}  // namespace qcfs

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcfs;
  using namespace qcfs::schema;
  fuzz::Input in(data, size);
  uint8_t which = in.U8();
  fuzz::Input rest = in;
  std::string_view bytes = in.Rest();
  switch (which % 13) {
    case 0: RoundTrip<InodeRecord>(bytes); break;
    case 1: RoundTrip<DirentRecord>(bytes); break;
    case 2: RoundTrip<ExtentRecord>(bytes); break;
    case 3: RoundTrip<XattrRecord>(bytes); break;
    case 4: RoundTrip<ChunkIndexRecord>(bytes); break;
    case 5: RoundTrip<SegmentRecord>(bytes); break;
    case 6: RoundTrip<VolumeState>(bytes); break;
    case 7: RoundTrip<StoreStats>(bytes); break;
    case 8: RoundTrip<SnapshotRecord>(bytes); break;
    case 9: RoundTrip<PendingOp>(bytes); break;
    case 10: History(bytes); break;
    case 11: Suffixes(bytes); break;
    case 12: Versioned(rest); break;
  }
  return 0;
}
