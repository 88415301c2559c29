// Writes the seed corpora of the fuzz targets from the real encoders, so
// that every seed is a valid input the fuzzer then damages:
//
//   build-fuzz/bin/qcfs_fuzz_seeds tests/fuzz/corpus
//
// Each target's input format is described at the top of its _fuzzer.cc.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "qcfs/io/mem_device.h"
#include "qcfs/meta/metafs.h"
#include "qcfs/meta/schema.h"
#include "qcfs/store/chunk_store.h"
#include "qcfs/store/superblock.h"
#include "tests/fuzz/fuzz_util.h"

namespace qcfs {
namespace {

namespace fs = std::filesystem;
using namespace internal;

fs::path g_root;

void Seed(const std::string& target, const std::string& name, std::string_view bytes) {
  fs::create_directories(g_root / target);
  std::ofstream out(g_root / target / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string U8(uint8_t v) { return std::string(1, static_cast<char>(v)); }
std::string U16(uint16_t v) { return std::string(reinterpret_cast<const char*>(&v), 2); }
std::string U64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
std::string Str(std::span<const std::byte> b) { return std::string(AsStringView(b)); }

// Text that compresses the way source files do.
std::string Text(size_t n, int seed) {
  std::string out;
  uint32_t x = 2463534242u + static_cast<uint32_t>(seed);
  static const char* kWords[] = {"chunk ", "segment ", "record ", "int ", "return ", "{\n", "}\n", "status ", "0x1f "};
  while (out.size() < n) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out += kWords[x % 9];
  }
  out.resize(n);
  return out;
}

ChunkContent Content(const std::string& s) { return {Fingerprint::Of(AsBytes(s)), AsBytes(s)}; }

// ---------------------------------------------------------------- superblock

void SuperblockSeeds() {
  Superblock sb;
  sb.uuid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  sb.device_size = 1ull << 30;
  sb.segment_count = (sb.device_size - sb.data_offset) / sb.segment_size;
  sb.created_ns = 1700000000000000000;
  std::string good = sb.Encode();
  Seed("superblock", "default", good + good);
  std::string damaged = good;
  damaged[60] ^= 0x40;
  Seed("superblock", "damaged-primary", damaged + good);

  Superblock small = sb;
  small.chunk_size = 4096;
  small.segment_size = 8192;
  small.compression = {Codec::kZstd, 19};
  small.device_size = small.data_offset + 100 * 8192;
  small.segment_count = 100;
  Seed("superblock", "small-zstd19", small.Encode() + small.Encode());

  Superblock newer = sb;
  newer.format_version = 2;
  newer.incompat_features = 1;
  Seed("superblock", "newer-format", newer.Encode() + good);
}

// ---------------------------------------------------------------- records

struct Records {
  std::map<std::string, std::string> bytes;  // name -> record
};

Records MakeRecords() {
  Records r;
  std::string a = Text(4000, 1), b = Text(1500, 2), c = Text(700, 3), rnd;
  for (int i = 0; i < 600; ++i) rnd.push_back(static_cast<char>((i * 2654435761u) >> 13));
  r.bytes["single-lz4"] = Str(EncodeChunk(Content(a), {Codec::kLz4, 0}).bytes);
  r.bytes["single-zstd"] = Str(EncodeChunk(Content(b), {Codec::kZstd, 3}).bytes);
  r.bytes["single-raw"] = Str(EncodeChunk(Content(rnd), {Codec::kLz4, 0}).bytes);
  std::string big;  // incompressible, three blocks, the last short: a raw record's block sums
  std::mt19937_64 gen(9000);
  for (int i = 0; i < 9000; ++i) big.push_back(static_cast<char>(gen() >> 56));
  r.bytes["single-raw-blocks"] = Str(EncodeChunk(Content(big), {Codec::kLz4, 0}).bytes);
  // A raw record as written before block sums (format 1), still read.
  ChunkContent old = Content(big);
  RecordMember m;
  std::memcpy(m.fp_prefix, old.fp.bytes.data(), kFpPrefix);
  m.raw_len = static_cast<uint32_t>(big.size());
  r.bytes["single-raw-format1"] =
      Str(BuildRecord(Codec::kNone, false, old.content, m.raw_len, {&m, 1}, kRecordFormatWhole));
  std::vector<ChunkContent> pack = {Content(a), Content(b), Content(c)};
  r.bytes["pack-zstd"] = Str(EncodePack(pack, {Codec::kZstd, 3}).bytes);
  std::vector<ChunkContent> pack2 = {Content(c), Content(rnd)};
  r.bytes["pack-lz4"] = Str(EncodePack(pack2, {Codec::kLz4, 0}).bytes);
  return r;
}

void RecordSeeds(const Records& r) {
  for (auto& [name, bytes] : r.bytes) Seed("record", name, U8(1) + bytes);
  SegmentHeader h;
  h.segment = 17;
  h.sequence = 123456;
  h.uuid[0] = 7;
  std::string header(kSegmentHeaderSize, '\0');
  EncodeSegmentHeader(h, reinterpret_cast<std::byte*>(header.data()));
  Seed("record", "segment-header", U8(2) + header + r.bytes.at("single-lz4"));
}

void ChunkReadSeeds(const Records& r) {
  const uint8_t consistent = 1 | 2;
  const uint8_t through_index = 8;
  for (auto& [name, bytes] : r.bytes) {
    schema::ChunkIndexRecord rec;
    rec.segment = 1;
    rec.offset = 4096;
    std::string value;
    rec.EncodeTo(&value);
    std::string fp(32, '\0');
    uint8_t flags = consistent | (name.starts_with("pack") ? through_index : 4);
    if (name.starts_with("single-raw")) {
      // Through the index, and a range from byte 4112, 1601 bytes long.
      flags = consistent | through_index | 16;
      fp[8] = 1, fp[9] = 1, fp[10] = 100;
    }
    Seed("chunk_read", name, U8(flags) + U8(static_cast<uint8_t>(value.size())) + value + fp + bytes);
  }
  // An index entry as the store writes it, for the raw (not derived) path.
  std::string a = Text(4000, 1);
  EncodedRecord e = EncodeChunk(Content(a), {Codec::kLz4, 0});
  schema::ChunkIndexRecord rec;
  rec.segment = 2;
  rec.offset = 8192;
  rec.record_len = static_cast<uint32_t>(e.bytes.size());
  rec.raw_len = e.members[0].raw_len;
  rec.codec = static_cast<uint8_t>(e.codec);
  rec.refcount = 1;
  rec.share = rec.record_len;
  std::string value;
  rec.EncodeTo(&value);
  std::string fp(e.members[0].fp.AsStringView());
  Seed("chunk_read", "exact-index", U8(through_index) + U8(static_cast<uint8_t>(value.size())) + value + fp +
                                        Str(e.bytes));
}

// ---------------------------------------------------------------- schema

void SchemaSeeds() {
  auto seed = [](int which, const std::string& name, const std::string& bytes) {
    Seed("schema", name, U8(static_cast<uint8_t>(which)) + bytes);
  };
  std::string v;
  schema::InodeRecord ino;
  ino.epoch = 3;
  ino.mode = 0100644;
  ino.uid = 1000;
  ino.gid = 1000;
  ino.nlink = 1;
  ino.size = 123456;
  ino.atime_ns = ino.mtime_ns = ino.ctime_ns = ino.btime_ns = 1700000000123456789;
  ino.parent = 1;
  ino.chunks = 2;
  ino.name = "file.txt";
  ino.EncodeTo(&v);
  seed(0, "inode", v);
  schema::InodeRecord link = ino;
  link.mode = 0120777;
  link.symlink = "../target/of/link";
  v.clear();
  link.EncodeTo(&v);
  seed(0, "inode-symlink", v);
  v.clear();
  schema::DirentRecord{5, 42, 8}.EncodeTo(&v);
  seed(1, "dirent", v);
  v.clear();
  schema::ExtentRecord ext;
  ext.epoch = 2;
  ext.fp = Fingerprint::Of(AsBytes(std::string_view("x")));
  ext.raw_len = 65536;
  ext.EncodeTo(&v);
  seed(2, "extent", v);
  v.clear();
  schema::XattrRecord{1, "user.comment value"}.EncodeTo(&v);
  seed(3, "xattr", v);
  v.clear();
  schema::ChunkIndexRecord c{3, 8192, 4100, 65536, 2, 7, 1000, 90000, 1234};
  c.EncodeTo(&v);
  seed(4, "chunk-index", v);
  v.clear();
  schema::SegmentRecord{4 << 20}.EncodeTo(&v);
  seed(5, "segment", v);
  v.clear();
  schema::VolumeState{100, 4, 1, 99, 3}.EncodeTo(&v);
  seed(6, "volume-state", v);
  v.clear();
  schema::StoreStats{10, 655360, 200000, 1310720, 65536}.EncodeTo(&v);
  seed(7, "store-stats", v);
  v.clear();
  schema::SnapshotRecord snap;
  snap.name = "nightly";
  snap.epoch = 7;
  snap.created_ns = 1700000000000000000;
  snap.logical_bytes = 1 << 30;
  snap.files = 1000;
  snap.EncodeTo(&v);
  seed(8, "snapshot", v);
  v.clear();
  schema::PendingOp{1, 2, 3, 9, 1}.EncodeTo(&v);
  seed(9, "pending", v);
  v.clear();
  std::string inode_value;
  ino.EncodeTo(&inode_value);
  schema::EncodeHistory(9, inode_value, &v);
  seed(10, "history-value", v);
  seed(10, "history-key", schema::HistoryKey(schema::DirentKey(1, "name"), 4));
  seed(11, "u64-suffix", schema::InodeKey(77).substr(1));
  // Versioned write: current epoch, newest snapshot, key, old present, delete, old value.
  std::string key = schema::InodeKey(5);
  seed(12, "versioned-put", U8(4) + U8(3) + U8(static_cast<uint8_t>(key.size())) + key + U8(1) + U8(0) + inode_value);
  seed(12, "versioned-delete", U8(4) + U8(3) + U8(static_cast<uint8_t>(key.size())) + key + U8(1) + U8(1) + inode_value);
}

// ---------------------------------------------------------------- MetaFs

// Turns a MetaFs device into metafs_fuzzer input: the root, then the
// journal's records (framing and checksums dropped: the harness redoes them).
void MetaFsSeed(const std::string& name, MemDevice* device, const MetaFsLayout& layout) {
  uint64_t generation = 0, offset = 0, length = 0;
  for (uint64_t slot : layout.root_offset) {
    std::string block(4096, '\0');
    device->Peek(slot, std::span<std::byte>(reinterpret_cast<std::byte*>(block.data()), block.size()));
    if (std::memcmp(block.data(), "QCFSMETA", 8) != 0 || LoadLE64(block.data() + 8) < generation) continue;
    generation = LoadLE64(block.data() + 8);
    offset = LoadLE64(block.data() + 16);
    length = LoadLE64(block.data() + 24);
  }
  std::string head = U64(generation) + U64(offset) + U64(length);
  std::string structured = U8(0) + head;
  std::string raw;
  uint64_t at = offset, len = length;
  for (int extent = 0; extent < 8; ++extent) {
    std::string buf(len, '\0');
    device->Peek(at, std::span<std::byte>(reinterpret_cast<std::byte*>(buf.data()), buf.size()));
    size_t pos = 0;
    bool next = false;
    while (pos + 21 <= buf.size()) {
      uint32_t n = LoadLE32(buf.data() + pos);
      if (pos + 21 + n > buf.size() || LoadLE64(buf.data() + pos + 5) != generation) break;
      std::string_view rec(buf.data() + pos, 21 + n);
      if (fuzz::EncodeJournalRecord(static_cast<uint8_t>(buf[pos + 4]), generation, rec.substr(13, n), layout.uuid) !=
          rec) {
        break;
      }
      uint8_t type = static_cast<uint8_t>(buf[pos + 4]);
      structured += U8(type) + U16(static_cast<uint16_t>(n)) + std::string(rec.substr(13, n));
      if (extent == 0) raw += rec;
      pos += 21 + n;
      if (type == 7) {
        Decoder d(rec.substr(13, n));
        d.Varint(&at);
        d.Varint(&len);
        structured += U8(fuzz::kMetaNextExtent);
        next = true;
        break;
      }
    }
    if (!next) break;
  }
  Seed("metafs", name, structured);
  Seed("metafs", name + "-raw", U8(fuzz::kMetaRaw) + head + raw);
}

void MetaFsSeeds() {
  const MetaFsLayout layout = fuzz::FuzzLayout();
  auto bytes = [](const std::string& s) { return AsBytes(s); };
  {
    MemDevice device(fuzz::DeviceSize(layout));
    auto fs = std::move(MetaFs::Format(&device, layout)).value();
    MetaFsSeed("formatted", &device, layout);
  }
  {
    MemDevice device(fuzz::DeviceSize(layout));
    {
      auto fs = std::move(MetaFs::Format(&device, layout)).value();
      auto current = std::move(fs->Create("CURRENT")).value();
      current->Append(bytes("MANIFEST-000005\n")).IgnoreError();
      current->Sync().IgnoreError();
      auto log = std::move(fs->Create("000004.log")).value();
      log->Append(bytes(Text(30000, 4))).IgnoreError();
      log->Sync().IgnoreError();
      auto tmp = std::move(fs->Create("000006.dbtmp")).value();
      tmp->Append(bytes("x")).IgnoreError();
      tmp->Sync().IgnoreError();
      fs->Rename("000006.dbtmp", "OPTIONS-000006").IgnoreError();
      fs->Truncate("000004.log", 5000).IgnoreError();
      auto gone = std::move(fs->Create("LOCK")).value();
      gone->Sync().IgnoreError();
      gone.reset();
      fs->Delete("LOCK").IgnoreError();
      auto seg = fs->AcquireDataSegment(1);
      if (seg.ok()) {
        fs->AcquireDataSegment(1).IgnoreError();
        fs->ReleaseDataSegment(*seg).IgnoreError();
      }
      fs->Sync().IgnoreError();
    }
    MetaFsSeed("files", &device, layout);
    // The same state after a mount: written compactly as a new generation.
    { auto fs = std::move(MetaFs::Mount(&device, layout)).value(); }
    MetaFsSeed("files-remounted", &device, layout);
  }
  {
    // A journal long enough to continue in a second extent.
    MemDevice device(fuzz::DeviceSize(layout));
    auto fs = std::move(MetaFs::Format(&device, layout)).value();
    auto f = std::move(fs->Create("MANIFEST-000001")).value();
    for (int i = 0; i < 800; ++i) {
      f->Append(bytes("m")).IgnoreError();
      f->Flush().IgnoreError();
    }
    f->Sync().IgnoreError();
    MetaFsSeed("continued", &device, layout);
  }
}

// ---------------------------------------------------------------- text targets

void ControlSeeds() {
  const char* requests[] = {
      R"({"op":"ping"})",
      R"({"op":"info"})",
      R"({"op":"sync"})",
      R"({"op":"trim"})",
      R"({"op":"snapshot-list","exclusive":true})",
      R"({"op":"snapshot-create","name":"fuzz"})",
      R"({"op":"snapshot-delete","name":"fuzz"})",
      R"({"op":"snapshot-restore","name":"base"})",
      R"({"op":"snapshot-diff","from":"base","to":"","chunks":true})",
      R"({"op":"resize","grow_by":8388608})",
      R"({"op":"resize","size":0})",
  };
  int i = 0;
  for (const char* r : requests) Seed("control", "request-" + std::to_string(i++), U8(0) + r);
  Seed("control", "answer-info", U8(1) + R"({"device":"/dev/sdb1","files":3,"segments":{"total":15,"free":9}})");
  Seed("control", "answer-error", U8(1) + R"({"error":"no snapshot named x","errno":2})");
  Seed("control", "record",
       U8(2) + R"({"pid":1234,"device":"/dev/sdb1","mountpoint":"/mnt/data","socket":"/run/qcfs/0123456789abcdef.sock",)"
               R"("uuid":"0b5c5a4e-2c86-4b51-9d3a-7f0c1e2d3b4a","owner":0,"closing":false})");
}

void MountOptionsSeeds() {
  Seed("mount_options", "defaults", std::string("defaults,noatime"));
  Seed("mount_options", "qcfs",
       std::string("rw,relatime,compression=zstd:3,cache_size=256M,flush_interval=5,discard,snapdir=visible"));
  Seed("mount_options", "fstab", std::string("ro,nodev,nosuid,noexec,nofail,_netdev,x-systemd.automount"));
  Seed("mount_options", "two-lists", std::string("compression=lz4\0cache_size=1G,nodiscard,allow_other", 51));
}

}  // namespace
}  // namespace qcfs

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " CORPUS_DIR (tests/fuzz/corpus)\n";
    return 2;
  }
  qcfs::g_root = argv[1];
  qcfs::SuperblockSeeds();
  qcfs::Records records = qcfs::MakeRecords();
  qcfs::RecordSeeds(records);
  qcfs::ChunkReadSeeds(records);
  qcfs::SchemaSeeds();
  qcfs::MetaFsSeeds();
  qcfs::ControlSeeds();
  qcfs::MountOptionsSeeds();
  return 0;
}
