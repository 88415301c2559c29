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
    MetaOptions mo;
    mo.create = true;
    db_ = std::move(MetaDb::Open(dir_.Join("meta"), mo)).value();
    StoreOptions so;
    so.read_cache_bytes = 0;  // every read goes to the device
    store_ = std::move(ChunkStore::Open(device_.get(), db_.get(), sb_, so)).value();
  }

  // Adds one reference to each chunk and commits.
  void Commit(const std::vector<PreparedChunk>& add, const std::vector<Fingerprint>& drop = {}) {
    auto txn = store_->Begin();
    for (const auto& c : add) ASSERT_TRUE(txn->AddRef(c).ok());
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

  TempDir dir_;
  Superblock sb_;
  std::unique_ptr<MemDevice> device_;
  std::unique_ptr<MetaDb> db_;
  std::unique_ptr<ChunkStore> store_;
};

TEST_F(ChunkStoreTest, StoresCompressedAndReadsBack) {
  std::string text = RandomBytes(65536, 7, true);
  PreparedChunk c = PrepareChunk(Bytes(text), CompressionSpec{});
  EXPECT_EQ(c.codec, Codec::kLz4);
  Commit({c});
  EXPECT_EQ(ReadBack(c.fp), text);
  StoreUsage u = store_->Usage();
  EXPECT_EQ(u.stats.chunks, 1u);
  EXPECT_EQ(u.stats.unique_bytes, text.size());
  EXPECT_LT(u.stats.stored_bytes, text.size() / 2);
}

TEST_F(ChunkStoreTest, IdenticalContentIsStoredOnce) {
  std::string data = RandomBytes(65536, 8);
  PreparedChunk c = PrepareChunk(Bytes(data), CompressionSpec{});
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
  PreparedChunk c = PrepareChunk(Bytes(data), CompressionSpec{});
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
  PreparedChunk c = PrepareChunk(Bytes(data), CompressionSpec{});
  Commit({c});
  auto value = *db_->Get(schema::ChunkKey(c.fp));
  schema::ChunkIndexRecord rec;
  ASSERT_TRUE(schema::ChunkIndexRecord::Decode(*value, &rec));
  std::byte flip[1] = {std::byte{0x5a}};
  device_->Poke(sb_.SegmentOffset(rec.segment) + rec.offset + internal::kRecordHeaderSize + 100, flip);
  auto r = store_->Read(c.fp);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), EIO);
  EXPECT_NE(r.status().message().find("checksum mismatch"), std::string::npos) << r.status().ToString();
  EXPECT_NE(store_->VerifyRecord(c.fp, rec, true), "");
}

TEST_F(ChunkStoreTest, ProvisionalChunksAreIndexedWithoutASecondWrite) {
  std::string data = RandomBytes(65536, 11);
  PreparedChunk c = PrepareChunk(Bytes(data), CompressionSpec{});
  const PreparedChunk* list[] = {&c};
  ASSERT_TRUE(store_->WriteChunks(list).ok());
  uint64_t writes = device_->writes();
  Commit({c});
  store_->ForgetProvisional(list);
  EXPECT_EQ(device_->writes(), writes);
  EXPECT_EQ(ReadBack(c.fp), data);
}

TEST_F(ChunkStoreTest, WrittenChunksSurviveAPowerCut) {
  std::string data = RandomBytes(65536, 12);
  PreparedChunk c = PrepareChunk(Bytes(data), CompressionSpec{});
  Commit({c});
  device_->DropUnsynced();
  EXPECT_EQ(ReadBack(c.fp), data);
}

TEST_F(ChunkStoreTest, CleanerCompactsSegmentsAndKeepsLiveChunksReadable) {
  std::vector<PreparedChunk> chunks;
  std::vector<std::string> contents;
  for (int i = 0; i < 60; ++i) {
    contents.push_back(RandomBytes(65536, 100 + i));
    chunks.push_back(PrepareChunk(Bytes(contents.back()), CompressionSpec{}));
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
  std::vector<PreparedChunk> chunks;
  std::vector<std::string> contents;
  for (int i = 0; i < 20; ++i) {
    contents.push_back(RandomBytes(65536, 300 + i));
    chunks.push_back(PrepareChunk(Bytes(contents.back()), CompressionSpec{}));
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
    std::vector<PreparedChunk> filler;
    for (int i = 0; i < 40; ++i) filler.push_back(PrepareChunk(Bytes(RandomBytes(65536, 900 + i)), CompressionSpec{}));
    Commit(filler);
  });
  EXPECT_EQ(ReadBack(chunks[19].fp), contents[19]);
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
