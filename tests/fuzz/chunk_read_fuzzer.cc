// The chunk store's read path on a damaged device and a damaged index:
// ChunkStore::Read (index entry, then the record at its location, checked
// against the entry, decompressed, the member cut out of a pack),
// ChunkStore::ReadRanges (only the blocks of a raw record that hold a range)
// and ChunkStore::VerifyChunk (what qcfs check runs on every chunk).
//
// Input:
//   u8  flags (below)
//   u8  n, then n bytes: the chunk's index entry (ChunkIndexRecord value)
//   32  bytes: the fingerprint asked for
//   ..  the record bytes, written at the entry's location
// With kConsistent the entry is made to agree with the record (location
// kept, lengths, codec and pack member taken from the record; n picks the
// member), so that the fuzzer reaches decompression and extraction. With
// kRange, a read through the index also reads the range that fingerprint
// bytes 8-11 give (never part of the prefix a record holds) and compares it
// with the whole chunk.
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>

#include "qcfs/io/mem_device.h"
#include "qcfs/meta/meta_db.h"
#include "qcfs/meta/metafs.h"
#include "qcfs/store/chunk_store.h"
#include "tests/fuzz/fuzz_util.h"

namespace qcfs {
namespace {

using namespace internal;

constexpr uint8_t kFixChecksum = 1;   // make the record's checksum right
constexpr uint8_t kConsistent = 2;    // derive the index entry from the record
constexpr uint8_t kFull = 4;          // VerifyChunk also hashes the content
constexpr uint8_t kThroughIndex = 8;  // Read(fp) through the index instead of VerifyChunk
constexpr uint8_t kRange = 16;        // with kThroughIndex: also ReadRanges

struct Store {
  std::string dir;
  Superblock sb;
  std::unique_ptr<MemDevice> device;
  std::unique_ptr<MetaFs> space;
  std::unique_ptr<MetaDb> db;
  std::unique_ptr<ChunkStore> store;
};
Store* g;

void RemoveDir() { std::filesystem::remove_all(g->dir); }

void Setup() {
  g = new Store;
  char tmpl[] = "/tmp/qcfs-chunk-read-fuzz-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) std::abort();
  g->dir = tmpl;
  std::atexit(RemoveDir);
  Superblock& sb = g->sb;
  sb.uuid[0] = 1;
  sb.chunk_size = 64 << 10;
  sb.segment_size = 1 << 20;
  sb.data_offset = 1 << 20;
  sb.segment_count = 4;
  sb.device_size = sb.data_offset + sb.segment_count * sb.segment_size;
  g->device = std::make_unique<MemDevice>(sb.device_size);
  MetaFsLayout layout;
  layout.data_offset = sb.data_offset;
  layout.segment_size = sb.segment_size;
  layout.segment_count = sb.segment_count;
  layout.uuid = sb.uuid;
  g->space = std::move(MetaFs::Format(g->device.get(), layout)).value();
  MetaOptions mo;
  mo.create = true;
  mo.block_cache_bytes = 1 << 20;
  mo.write_buffer_bytes = 4 << 20;
  g->db = std::move(MetaDb::Open(g->dir + "/meta", mo)).value();
  StoreOptions so;
  so.read_cache_bytes = 0;  // every read goes to the device
  g->store = std::move(ChunkStore::Open(g->device.get(), g->db.get(), g->space.get(), sb, so)).value();
}

// Makes `rec` describe `record` (as far as its header and table say).
void Agree(const std::string& record, uint8_t pick, schema::ChunkIndexRecord* rec, Fingerprint* fp) {
  RecordView v;
  std::string why;
  if (!ParseRecord(fuzz::Span(record), &v, &why)) {
    rec->record_len = static_cast<uint32_t>(record.size());
    return;
  }
  rec->record_len = static_cast<uint32_t>(v.total_len);
  rec->codec = static_cast<uint8_t>(v.codec);
  size_t k = pick % v.members.size();
  uint32_t pos = 0;
  for (size_t i = 0; i < k; ++i) pos += v.members[i].raw_len;
  rec->raw_len = v.members[k].raw_len;
  rec->pack_offset = v.pack ? pos : 0;
  rec->pack_raw = v.pack ? v.raw_len : 0;
  std::memcpy(fp->bytes.data(), v.members[k].fp_prefix, kFpPrefix);
}

}  // namespace
}  // namespace qcfs

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  qcfs::Setup();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcfs;
  fuzz::Input in(data, size);
  uint8_t flags = in.U8();
  uint8_t n = in.U8();
  std::string value(in.Bytes(n));
  Fingerprint fp = Fingerprint::FromBytes(std::string(in.Bytes(Fingerprint::kSize)).append(Fingerprint::kSize, '\0'));
  std::string record(in.Rest());
  if (flags & kFixChecksum) fuzz::FixRecordChecksum(&record);

  const Superblock& sb = g->sb;
  schema::ChunkIndexRecord rec;
  bool decoded = schema::ChunkIndexRecord::Decode(value, &rec);
  if (flags & kConsistent) {
    rec.segment %= sb.segment_count;
    rec.offset %= sb.segment_size;
    Agree(record, n, &rec, &fp);
    value.clear();
    rec.EncodeTo(&value);
    decoded = true;
  }

  // The record goes where the entry points (or at the start of the segment
  // area), as much of it as the segment holds.
  uint64_t seg = decoded && rec.segment < sb.segment_count ? rec.segment : 0;
  uint64_t off = decoded && rec.offset < sb.segment_size ? rec.offset : 0;
  uint64_t at = sb.SegmentOffset(static_cast<uint32_t>(seg)) + off;
  std::string placed = record.substr(0, sb.segment_size - off);
  g->device->Poke(at, fuzz::Span(placed));

  if (flags & kThroughIndex) {
    rocksdb::WriteBatch batch;
    batch.Put(schema::ChunkKey(fp), value);
    if (!g->db->Write(&batch, false).ok()) std::abort();
    if (flags & kRange) {
      const auto* b = reinterpret_cast<const char*>(fp.bytes.data());
      ChunkRange range{uint32_t{LoadLE16(b + 8)} * 16, uint32_t{LoadLE16(b + 10)} * 16 + 1};
      auto piece = std::move(g->store->ReadRanges({&fp, 1}, {&range, 1})[0]);
      auto whole = g->store->Read(fp);  // the read cache is off: this reads the record again
      if (piece.ok()) {
        QCFS_FUZZ_CHECK(whole.ok(), "a range of a chunk reads but the chunk does not");
        const auto& got = *piece->data;
        const auto& all = **whole;
        QCFS_FUZZ_CHECK(piece->offset <= range.offset && piece->offset + got.size() <= all.size(),
                        "ReadRanges hands out a piece outside the chunk or after the range");
        const uint64_t want_end = std::min<uint64_t>(uint64_t{range.offset} + range.length, all.size());
        QCFS_FUZZ_CHECK(want_end <= range.offset || piece->offset + got.size() >= want_end,
                        "ReadRanges hands out less than the range");
        QCFS_FUZZ_CHECK(std::equal(got.begin(), got.end(), all.begin() + piece->offset),
                        "ReadRanges and Read disagree");
      }
    }
    auto content = g->store->Read(fp);
    if (content.ok()) {
      QCFS_FUZZ_CHECK(decoded && (*content)->size() == rec.raw_len, "Read returns other than raw_len bytes");
    }
    rocksdb::WriteBatch undo;
    undo.Delete(schema::ChunkKey(fp));
    if (!g->db->Write(&undo, false).ok()) std::abort();
  } else if (decoded) {
    std::string damage = g->store->VerifyChunk(fp, rec, (flags & kFull) != 0);
    (void)damage;
  }

  std::string zeros(placed.size(), '\0');
  g->device->Poke(at, fuzz::Span(zeros));
  return 0;
}
