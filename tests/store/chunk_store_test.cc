#include "qcfs/store/chunk_store.h"

#include <gtest/gtest.h>

#include "qcfs/io/mem_device.h"
#include "qcfs/store/internal/record.h"
#include "tests/testutil/temp_dir.h"
#include "tests/testutil/volume_fixture.h"

namespace qcfs {
namespace {

using testing::Bytes;
using testing::RandomBytes;
using testing::TempDir;

class ChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sb_.uuid[0] = 1;
    sb_.device_size = 64ull << 20;
    sb_.segment_size = 1 << 20;
    sb_.chunk_size = 64 << 10;
    sb_.segment_count = (sb_.device_size - sb_.data_offset) / sb_.segment_size;
    device_ = std::make_unique<MemDevice>(sb_.device_size);
    MetaFsLayout layout;
    layout.data_offset = sb_.data_offset;
    layout.segment_size = sb_.segment_size;
    layout.segment_count = sb_.segment_count;
    layout.uuid = sb_.uuid;
    space_ = std::move(MetaFs::Format(device_.get(), layout)).value();
    MetaOptions mo;
    mo.create = true;
    db_ = std::move(MetaDb::Open(dir_.Join("meta"), mo)).value();
    StoreOptions so;
    so.read_cache_bytes = 0;  // every read goes to the device
    store_ = std::move(ChunkStore::Open(device_.get(), db_.get(), space_.get(), sb_, so)).value();
  }

  // Adds one reference to each chunk and commits.
  void Commit(const std::vector<ChunkContent>& add, const std::vector<Fingerprint>& drop = {}) {
    auto txn = store_->Begin();
    for (const auto& c : add) ASSERT_TRUE(txn->AddRef(c, CompressionSpec{}).ok());
    for (const auto& f : drop) ASSERT_TRUE(txn->DropRef(f).ok());
    rocksdb::WriteBatch batch;
    ASSERT_TRUE(txn->Prepare(&batch).ok());
    ASSERT_TRUE(db_->Write(&batch, false).ok());
    txn->Committed();
  }

  std::string ReadBack(const Fingerprint& fp) {
    auto r = store_->Read(fp);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    return std::string(reinterpret_cast<const char*>((*r)->data()), (*r)->size());
  }

  // The chunk's index record.
  schema::ChunkIndexRecord IndexOf(const Fingerprint& fp) {
    schema::ChunkIndexRecord rec;
    auto value = db_->Get(schema::ChunkKey(fp));
    EXPECT_TRUE(value.ok() && value->has_value() && schema::ChunkIndexRecord::Decode(**value, &rec))
        << "no index record for chunk " << fp.ShortHex();
    return rec;
  }

  // Replaces the chunk's index record (to make it disagree with the device).
  void SetIndex(const Fingerprint& fp, const schema::ChunkIndexRecord& rec) {
    std::string v;
    rec.EncodeTo(&v);
    rocksdb::WriteBatch batch;
    batch.Put(schema::ChunkKey(fp), v);
    ASSERT_TRUE(db_->Write(&batch, false).ok());
  }

  // Keeps chunk contents alive for the spans in ChunkContent.
  ChunkContent Chunk(const std::string& data) {
    contents_.push_back(std::make_unique<std::string>(data));
    const std::string& d = *contents_.back();
    return ChunkContent{Fingerprint::Of(Bytes(d)), Bytes(d)};
  }

  std::vector<std::unique_ptr<std::string>> contents_;
  TempDir dir_;
  Superblock sb_;
  std::unique_ptr<MemDevice> device_;
  std::unique_ptr<MetaFs> space_;
  std::unique_ptr<MetaDb> db_;
  std::unique_ptr<ChunkStore> store_;
};

TEST_F(ChunkStoreTest, StoresCompressedAndReadsBack) {
  std::string text = RandomBytes(65536, 7, true);
  ChunkContent c = Chunk(text);
  Commit({c});
  EXPECT_EQ(ReadBack(c.fp), text);
  StoreUsage u = store_->Usage();
  EXPECT_EQ(u.stats.chunks, 1u);
  EXPECT_EQ(u.stats.unique_bytes, text.size());
  EXPECT_LT(u.stats.stored_bytes, text.size() / 2);
}

TEST_F(ChunkStoreTest, IdenticalContentIsStoredOnce) {
  std::string data = RandomBytes(65536, 8);
  ChunkContent c = Chunk(data);
  Commit({c});
  uint64_t writes = device_->writes();
  Commit({c, c});
  EXPECT_EQ(device_->writes(), writes) << "a dedup hit must not write chunk data";
  StoreUsage u = store_->Usage();
  EXPECT_EQ(u.stats.chunks, 1u);
  EXPECT_EQ(u.stats.referenced_bytes, 3 * data.size());
  EXPECT_EQ(u.stats.unique_bytes, data.size());
}

TEST_F(ChunkStoreTest, LastReferenceFreesTheChunkAndItsSegment) {
  std::string data = RandomBytes(65536, 9);
  ChunkContent c = Chunk(data);
  uint64_t free_before = store_->Usage().free_segments;
  Commit({c});
  Commit({}, {c.fp});
  ASSERT_TRUE(store_->SyncFreed().ok());
  StoreUsage u = store_->Usage();
  EXPECT_EQ(u.stats, schema::StoreStats{});
  // The segment that received the chunk is still open for appends, or free again.
  EXPECT_GE(u.free_segments + 1, free_before);
  EXPECT_EQ(store_->Read(c.fp).status().code(), ENOENT);
}

TEST_F(ChunkStoreTest, DamagedChunkReadsAsEioNeverAsWrongBytes) {
  std::string data = RandomBytes(65536, 10, true);
  ChunkContent c = Chunk(data);
  Commit({c});
  schema::ChunkIndexRecord rec = IndexOf(c.fp);
  std::byte flip[1] = {std::byte{0x5a}};
  device_->Poke(sb_.SegmentOffset(rec.segment) + rec.offset + internal::kRecordHeaderSize + 100, flip);
  auto r = store_->Read(c.fp);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), EIO);
  EXPECT_NE(r.status().message().find("checksum mismatch"), std::string::npos) << r.status().ToString();
  EXPECT_NE(store_->VerifyChunk(c.fp, rec, true), "");
}

// An uncompressed chunk's header and payload are read apart (the payload
// straight into the buffer handed out); the checksum still covers both, and
// a record that disagrees with the index is EIO.
TEST_F(ChunkStoreTest, UncompressedChunkIsVerifiedAcrossHeaderAndPayload) {
  std::string data = RandomBytes(65536, 11);
  ChunkContent c = Chunk(data);
  Commit({c});
  schema::ChunkIndexRecord rec = IndexOf(c.fp);
  ASSERT_EQ(rec.codec, static_cast<uint8_t>(Codec::kNone));
  ASSERT_FALSE(rec.packed());
  const uint64_t at = sb_.SegmentOffset(rec.segment) + rec.offset;
  for (uint64_t pos : {uint64_t{5}, uint64_t{16}, uint64_t{24}, internal::kRecordHeaderSize, uint64_t{rec.record_len} - 1}) {
    std::byte was[1];
    ASSERT_TRUE(device_->Read(at + pos, was).ok());
    std::byte flip[1] = {was[0] ^ std::byte{0x01}};
    device_->Poke(at + pos, flip);
    auto r = store_->Read(c.fp);
    EXPECT_EQ(r.status().code(), EIO) << "byte " << pos;
    auto many = store_->ReadMany(std::vector<Fingerprint>{c.fp});
    EXPECT_EQ(many[0].status().code(), EIO) << "byte " << pos;
    device_->Poke(at + pos, was);
  }
  // The index promises a longer record than the header describes.
  schema::ChunkIndexRecord longer = rec;
  longer.record_len += 4096;
  SetIndex(c.fp, longer);
  EXPECT_EQ(store_->Read(c.fp).status().code(), EIO);
  // ... or one no longer than a header (nothing left to read a payload into).
  schema::ChunkIndexRecord header_only = rec;
  header_only.record_len = internal::kRecordHeaderSize;
  SetIndex(c.fp, header_only);
  EXPECT_EQ(store_->Read(c.fp).status().code(), EIO);
  EXPECT_EQ(store_->ReadMany(std::vector<Fingerprint>{c.fp})[0].status().code(), EIO);
  SetIndex(c.fp, rec);
  EXPECT_EQ(ReadBack(c.fp), data);
  auto many = store_->ReadMany(std::vector<Fingerprint>{c.fp});
  ASSERT_TRUE(many[0].ok());
  EXPECT_TRUE(std::equal((*many[0])->begin(), (*many[0])->end(), Bytes(data).begin()));
}

// A chunk stored raw carries a checksum per 4 KiB block: a ranged read
// reads and verifies only the blocks that hold its range, so damage
// elsewhere in the record does not fail it, and damage inside it does.
TEST_F(ChunkStoreTest, RangeOfARawChunkReadsAndVerifiesOnlyItsBlocks) {
  const std::string data = RandomBytes(65536 - 1000, 12);  // the last block short
  ChunkContent c = Chunk(data);
  Commit({c});
  schema::ChunkIndexRecord rec = IndexOf(c.fp);
  ASSERT_EQ(rec.codec, static_cast<uint8_t>(Codec::kNone));
  const size_t table = internal::BlockTableLength(data.size());
  ASSERT_EQ(rec.record_len, internal::kRecordHeaderSize + table + data.size());
  std::atomic<uint64_t> read_bytes{0};
  device_->SetFaultHook([&](const IoOp& op) {
    if (op.kind == IoOp::Kind::kRead) read_bytes += op.length;
    return Status::Ok();
  });
  auto range = [&](uint32_t offset, uint32_t length) {
    ChunkRange r{offset, length};
    return std::move(store_->ReadRanges({&c.fp, 1}, {&r, 1})[0]);
  };
  auto piece_bytes = [](const ChunkPiece& p) {
    return std::string(reinterpret_cast<const char*>(p.data->data()), p.data->size());
  };

  auto mid = range(5000, 4000);  // blocks 1 and 2
  ASSERT_TRUE(mid.ok()) << mid.status().ToString();
  EXPECT_EQ(mid->offset, 4096u);
  EXPECT_EQ(piece_bytes(*mid), data.substr(4096, 8192));
  EXPECT_EQ(read_bytes.load(), internal::kRecordHeaderSize + table + 8192);

  auto tail = range(60000, 10000);  // into the short last block and past the chunk's end
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->offset, 57344u);
  EXPECT_EQ(piece_bytes(*tail), data.substr(57344));
  auto beyond = range(65000, 536);  // only zeros: the chunk holds none of it
  ASSERT_TRUE(beyond.ok());
  EXPECT_LE(beyond->offset, 65000u);
  EXPECT_LE(beyond->offset + beyond->data->size(), data.size());
  EXPECT_EQ(store_->ReadRanges({&c.fp, 1}, {})[0].status().code(), EINVAL);  // a range per chunk, or none is read
  auto all = range(0, 65536);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->offset, 0u);
  EXPECT_EQ(piece_bytes(*all), data);

  // A byte of block 10's payload goes bad.
  const uint64_t at = sb_.SegmentOffset(rec.segment) + rec.offset;
  const uint64_t payload = at + internal::kRecordHeaderSize + table;
  std::byte was[1];
  ASSERT_TRUE(device_->Read(payload + 10 * 4096 + 7, was).ok());
  std::byte flip[1] = {was[0] ^ std::byte{0x10}};
  device_->Poke(payload + 10 * 4096 + 7, flip);
  auto other = range(4096, 4096);
  ASSERT_TRUE(other.ok()) << "damage in another block fails the read: " << other.status().ToString();
  EXPECT_EQ(piece_bytes(*other), data.substr(4096, 4096));
  for (auto [offset, length] : {std::pair{10u * 4096 + 100, 10u}, std::pair{9u * 4096 + 4000, 200u}}) {
    auto bad = range(offset, length);
    EXPECT_EQ(bad.status().code(), EIO) << offset;
    EXPECT_NE(bad.status().message().find("checksum mismatch"), std::string::npos) << bad.status().ToString();
  }
  EXPECT_EQ(store_->Read(c.fp).status().code(), EIO);
  EXPECT_NE(store_->VerifyChunk(c.fp, rec, false), "");
  device_->Poke(payload + 10 * 4096 + 7, was);

  // The block table and the header are covered by the header's checksum.
  for (uint64_t pos : {internal::kRecordHeaderSize + 8 * 3 + 2, uint64_t{13}}) {
    ASSERT_TRUE(device_->Read(at + pos, was).ok());
    flip[0] = was[0] ^ std::byte{0x01};
    device_->Poke(at + pos, flip);
    EXPECT_EQ(range(0, 100).status().code(), EIO) << "byte " << pos;
    device_->Poke(at + pos, was);
  }
  EXPECT_EQ(piece_bytes(*range(0, 100)), data.substr(0, 4096));
}

// Volumes written before block sums hold raw chunks in format 1 (one
// checksum over the payload): they are still read, whole.
TEST_F(ChunkStoreTest, RawChunkWithoutBlockSumsIsStillRead) {
  const std::string data = RandomBytes(65536, 13);
  ChunkContent c = Chunk(data);
  Commit({c});
  schema::ChunkIndexRecord rec = IndexOf(c.fp);
  internal::RecordMember m;
  std::memcpy(m.fp_prefix, c.fp.bytes.data(), internal::kFpPrefix);
  m.raw_len = static_cast<uint32_t>(data.size());
  auto old = internal::BuildRecord(Codec::kNone, false, c.content, m.raw_len, {&m, 1}, internal::kRecordFormatWhole);
  ASSERT_EQ(old.size(), internal::kRecordHeaderSize + data.size());
  device_->Poke(sb_.SegmentOffset(rec.segment) + rec.offset, old);
  rec.record_len = static_cast<uint32_t>(old.size());
  SetIndex(c.fp, rec);

  EXPECT_EQ(ReadBack(c.fp), data);
  ChunkRange r{5000, 3000};
  auto piece = std::move(store_->ReadRanges({&c.fp, 1}, {&r, 1})[0]);
  ASSERT_TRUE(piece.ok()) << piece.status().ToString();
  EXPECT_EQ(piece->offset, 0u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(piece->data->data()), piece->data->size()), data);
  EXPECT_EQ(store_->VerifyChunk(c.fp, rec, true), "");
  // Its one checksum still covers the whole payload.
  std::byte flip[1] = {std::byte{0x33}};
  device_->Poke(sb_.SegmentOffset(rec.segment) + rec.offset + internal::kRecordHeaderSize + 60000, flip);
  EXPECT_EQ(std::move(store_->ReadRanges({&c.fp, 1}, {&r, 1})[0]).status().code(), EIO);
}

TEST_F(ChunkStoreTest, ReadManyGivesEachChunkItsOwnResult) {
  std::vector<std::string> contents;
  std::vector<ChunkContent> chunks;
  for (int i = 0; i < 6; ++i) {
    contents.push_back(RandomBytes(65536, 40 + i, i % 2 == 0));
    chunks.push_back(Chunk(contents.back()));
  }
  Commit(chunks);
  // Chunk 2 is damaged; a fingerprint the store never held sits between.
  schema::ChunkIndexRecord rec = IndexOf(chunks[2].fp);
  std::byte flip[1] = {std::byte{0x5a}};
  device_->Poke(sb_.SegmentOffset(rec.segment) + rec.offset + internal::kRecordHeaderSize + 100, flip);
  std::vector<Fingerprint> fps;
  for (const auto& c : chunks) fps.push_back(c.fp);
  fps.insert(fps.begin() + 4, Fingerprint::Of(Bytes(std::string("never stored"))));
  auto got = store_->ReadMany(fps);
  ASSERT_EQ(got.size(), fps.size());
  for (size_t i = 0; i < fps.size(); ++i) {
    if (i == 2) {
      EXPECT_EQ(got[i].status().code(), EIO);
    } else if (i == 4) {
      EXPECT_EQ(got[i].status().code(), ENOENT);
    } else {
      ASSERT_TRUE(got[i].ok()) << i << ": " << got[i].status().ToString();
      const std::string& want = contents[i < 4 ? i : i - 1];
      EXPECT_EQ(std::string(reinterpret_cast<const char*>((*got[i])->data()), (*got[i])->size()), want) << i;
    }
  }
}

TEST_F(ChunkStoreTest, ProvisionalChunksAreIndexedWithoutASecondWrite) {
  std::string data = RandomBytes(65536, 11);
  ChunkContent c = Chunk(data);
  EncodedRecord r = EncodeChunk(c, CompressionSpec{});
  const EncodedRecord* list[] = {&r};
  ASSERT_TRUE(store_->WriteRecords(list).ok());
  EXPECT_TRUE((*store_->Known(std::vector<Fingerprint>{c.fp}))[0]);
  uint64_t writes = device_->writes();
  Commit({c});
  store_->ForgetProvisional(list);
  EXPECT_EQ(device_->writes(), writes);
  EXPECT_EQ(ReadBack(c.fp), data);
}

TEST_F(ChunkStoreTest, SmallChunksArePackedAndReadBackOneByOne) {
  std::vector<ChunkContent> small;
  for (int i = 0; i < 12; ++i) small.push_back(Chunk(RandomBytes(2000 + i * 100, 500 + i, true)));
  EncodedRecord pack = EncodePack(small, *CompressionSpec::Parse("zstd:3"));
  uint64_t shares = 0;
  for (auto& m : pack.members) shares += m.share;
  EXPECT_EQ(shares, pack.bytes.size()) << "the members' shares add up to the record";
  const EncodedRecord* list[] = {&pack};
  ASSERT_TRUE(store_->WriteRecords(list).ok());
  Commit(small);
  store_->ForgetProvisional(list);
  for (auto& c : small) EXPECT_EQ(ReadBack(c.fp), std::string(reinterpret_cast<const char*>(c.content.data()), c.content.size()));
  EXPECT_EQ(store_->Usage().stats.stored_bytes, pack.bytes.size());
  // Freeing some members keeps the others readable; freeing all frees the record.
  Commit({}, {small[0].fp, small[5].fp});
  EXPECT_EQ(ReadBack(small[6].fp).size(), small[6].content.size());
  std::vector<Fingerprint> rest;
  for (int i = 0; i < 12; ++i) if (i != 0 && i != 5) rest.push_back(small[i].fp);
  Commit({}, rest);
  EXPECT_EQ(store_->Usage().stats, schema::StoreStats{});
}

TEST_F(ChunkStoreTest, CleanerRepacksPacksWithDeadMembers) {
  std::vector<ChunkContent> small;
  for (int i = 0; i < 8; ++i) small.push_back(Chunk(RandomBytes(3000, 600 + i)));
  EncodedRecord pack = EncodePack(small, CompressionSpec{});
  const EncodedRecord* list[] = {&pack};
  ASSERT_TRUE(store_->WriteRecords(list).ok());
  Commit(small);
  store_->ForgetProvisional(list);
  std::vector<ChunkContent> big;
  for (int i = 0; i < 30; ++i) big.push_back(Chunk(RandomBytes(65536, 700 + i)));
  Commit(big);
  std::vector<Fingerprint> drop = {small[1].fp, small[2].fp, small[7].fp};
  for (auto& b : big) drop.push_back(b.fp);
  Commit({}, drop);
  ASSERT_TRUE(store_->Clean(sb_.segment_count).ok());
  for (int i : {0, 3, 4, 5, 6}) {
    EXPECT_EQ(ReadBack(small[i].fp),
              std::string(reinterpret_cast<const char*>(small[i].content.data()), small[i].content.size()));
  }
  auto u = store_->Usage();
  EXPECT_LT(u.stats.stored_bytes, pack.bytes.size()) << "the dead members' bytes are gone";
}

TEST_F(ChunkStoreTest, WrittenChunksSurviveAPowerCut) {
  std::string data = RandomBytes(65536, 12);
  ChunkContent c = Chunk(data);
  Commit({c});
  device_->DropUnsynced();
  EXPECT_EQ(ReadBack(c.fp), data);
}

TEST_F(ChunkStoreTest, DirectWritesAreBlockAlignedAndKeepEveryRecord) {
  // MemDevice refuses a direct write that is not block aligned, as the kernel does.
  device_->SetDirectWrites(true);
  uint64_t direct = 0;
  device_->SetFaultHook([&](const IoOp& op) {
    if (op.kind == IoOp::Kind::kWrite && op.direct) ++direct;
    return Status::Ok();
  });
  std::vector<ChunkContent> stored;
  // Through a transaction: records staged one by one, ending mid-block.
  std::vector<ChunkContent> first;
  for (int i = 0; i < 5; ++i) first.push_back(Chunk(RandomBytes(65536 - i * 777, 900 + i, i % 2 == 1)));
  Commit(first);
  stored.insert(stored.end(), first.begin(), first.end());
  // A pack of small chunks, then a round larger than the 8 MiB write buffer
  // (160 chunks of 64 KiB over several 1 MiB segments), both after a write
  // that ended mid-block.
  std::vector<ChunkContent> small;
  for (int i = 0; i < 9; ++i) small.push_back(Chunk(RandomBytes(1500 + i * 333, 950 + i, true)));
  std::vector<ChunkContent> large;
  for (int i = 0; i < 160; ++i) large.push_back(Chunk(RandomBytes(65536, 1000 + i, i % 3 == 0)));
  std::vector<EncodedRecord> records;
  records.push_back(EncodePack(small, CompressionSpec{}));
  for (const auto& c : large) records.push_back(EncodeChunk(c, CompressionSpec{}));
  const EncodedRecord* pack[] = {&records[0]};
  std::vector<const EncodedRecord*> round;
  for (size_t i = 1; i < records.size(); ++i) round.push_back(&records[i]);
  ASSERT_TRUE(store_->WriteRecords(pack).ok());
  ASSERT_TRUE(store_->WriteRecords(round).ok());
  const uint64_t writes = device_->writes();
  std::vector<ChunkContent> rest = small;
  rest.insert(rest.end(), large.begin(), large.end());
  Commit(rest);
  EXPECT_EQ(device_->writes(), writes) << "the records were indexed where they were written";
  store_->ForgetProvisional(pack);
  store_->ForgetProvisional(round);
  stored.insert(stored.end(), rest.begin(), rest.end());
  EXPECT_GT(direct, 10u);
  device_->DropUnsynced();  // everything written was synced before its commit
  for (const auto& c : stored) {
    EXPECT_EQ(ReadBack(c.fp), std::string(reinterpret_cast<const char*>(c.content.data()), c.content.size()));
  }
}

TEST_F(ChunkStoreTest, CleanerCompactsSegmentsAndKeepsLiveChunksReadable) {
  std::vector<ChunkContent> chunks;
  std::vector<std::string> contents;
  for (int i = 0; i < 60; ++i) {
    contents.push_back(RandomBytes(65536, 100 + i));
    chunks.push_back(Chunk(contents.back()));
  }
  Commit(chunks);
  std::vector<Fingerprint> drop;
  for (int i = 0; i < 60; i += 2) drop.push_back(chunks[i].fp);
  Commit({}, drop);
  ASSERT_TRUE(store_->SyncFreed().ok());
  uint64_t free_before = store_->Usage().free_segments;
  auto cleaned = store_->Clean(sb_.segment_count);
  ASSERT_TRUE(cleaned.ok()) << cleaned.status().ToString();
  EXPECT_GT(*cleaned, 0u);
  EXPECT_GT(store_->Usage().free_segments, free_before);
  for (int i = 1; i < 60; i += 2) EXPECT_EQ(ReadBack(chunks[i].fp), contents[i]) << i;
}

TEST_F(ChunkStoreTest, ReadFollowsAChunkMovedByTheCleaner) {
  std::vector<ChunkContent> chunks;
  std::vector<std::string> contents;
  for (int i = 0; i < 20; ++i) {
    contents.push_back(RandomBytes(65536, 300 + i));
    chunks.push_back(Chunk(contents.back()));
  }
  Commit(chunks);
  std::vector<Fingerprint> drop;
  for (int i = 0; i < 19; ++i) drop.push_back(chunks[i].fp);
  Commit({}, drop);
  // Between the index lookup and the device read, the cleaner moves the
  // chunk and the old segment is reused for other data.
  bool once = true;
  store_->SetReadHook([&] {
    if (!once) return;
    once = false;
    ASSERT_TRUE(store_->Clean(sb_.segment_count).ok());
    std::vector<ChunkContent> filler;
    for (int i = 0; i < 40; ++i) filler.push_back(Chunk(RandomBytes(65536, 900 + i)));
    Commit(filler);
  });
  EXPECT_EQ(ReadBack(chunks[19].fp), contents[19]);
}

TEST_F(ChunkStoreTest, StaleLocationOfAMovedChunkIsLookedUpAgain) {
  StoreOptions so;
  so.read_cache_bytes = 64 << 10;  // one chunk of data, and 512 locations
  store_.reset();
  store_ = std::move(ChunkStore::Open(device_.get(), db_.get(), space_.get(), sb_, so)).value();
  std::vector<ChunkContent> chunks;
  std::vector<std::string> contents;
  for (int i = 0; i < 20; ++i) {
    contents.push_back(RandomBytes(65536, 500 + i));
    chunks.push_back(Chunk(contents.back()));
  }
  std::string other_content = RandomBytes(65536, 599);
  ChunkContent other = Chunk(other_content);
  chunks.push_back(other);
  Commit(chunks);
  chunks.pop_back();
  std::vector<Fingerprint> drop;
  for (int i = 0; i < 19; ++i) drop.push_back(chunks[i].fp);
  Commit({}, drop);
  std::vector<ChunkContent> more;  // new records go past chunk 19's segment
  for (int i = 0; i < 20; ++i) more.push_back(Chunk(RandomBytes(65536, 650 + i)));
  Commit(more);
  auto where = [&](const Fingerprint& fp) {
    schema::ChunkIndexRecord rec = IndexOf(fp);
    return std::pair{rec.segment, rec.offset};
  };
  const auto before = where(chunks[19].fp);
  EXPECT_EQ(ReadBack(chunks[19].fp), contents[19]);  // remembers where it is
  EXPECT_EQ(ReadBack(other.fp), other_content);      // and pushes it out of the chunk cache
  // The cleaner moves it, and its old segment is written over.
  ASSERT_TRUE(store_->Clean(sb_.segment_count).ok());
  ASSERT_TRUE(store_->SyncFreed().ok());
  std::vector<ChunkContent> filler;
  for (int i = 0; i < 40; ++i) filler.push_back(Chunk(RandomBytes(65536, 700 + i)));
  Commit(filler);
  ASSERT_NE(where(chunks[19].fp), before);
  EXPECT_EQ(ReadBack(chunks[19].fp), contents[19]);
  EXPECT_EQ(ReadBack(other.fp), other_content);
  auto many = store_->ReadMany(std::vector<Fingerprint>{chunks[19].fp, other.fp});
  ASSERT_TRUE(many[0].ok() && many[1].ok());
  EXPECT_TRUE(std::equal((*many[0])->begin(), (*many[0])->end(), Bytes(contents[19]).begin()));
}

TEST_F(ChunkStoreTest, FullStoreRefusesReservations) {
  uint64_t capacity = store_->Usage().available_bytes;
  EXPECT_TRUE(store_->Reserve(capacity).ok());
  EXPECT_EQ(store_->Reserve(4096).code(), ENOSPC);
  store_->Unreserve(capacity);
  EXPECT_TRUE(store_->Reserve(4096).ok());
}

}  // namespace
}  // namespace qcfs
