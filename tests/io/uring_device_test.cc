#include "qcfs/io/device.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include <gtest/gtest.h>

#include "qcfs/io/mem_device.h"
#include "tests/testutil/temp_dir.h"

namespace qcfs {
namespace {

using testing::TempDir;

std::vector<std::byte> Pattern(size_t n, int seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 31 + seed) & 0xff);
  return v;
}

TEST(UringDevice, BatchedWritesAndReads) {
  TempDir dir;
  std::string img = dir.Join("dev.img");
  ASSERT_TRUE(CreateImageFile(img, 64 << 20, false).ok());
  auto dev = OpenDevice(img, DeviceOptions{});
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  EXPECT_EQ((*dev)->size(), 64u << 20);
  // More operations than the ring holds, of odd sizes and offsets.
  std::vector<std::vector<std::byte>> bufs;
  std::vector<IoOp> writes;
  for (int i = 0; i < 300; ++i) {
    bufs.push_back(Pattern(1000 + i * 37, i));
    writes.push_back(IoOp::Write(uint64_t(i) * 100000 + 7, bufs.back()));
  }
  ASSERT_TRUE((*dev)->Submit(writes).ok());
  ASSERT_TRUE((*dev)->Sync().ok());
  std::vector<std::vector<std::byte>> back;
  std::vector<IoOp> reads;
  for (int i = 0; i < 300; ++i) back.emplace_back(bufs[i].size());
  for (int i = 0; i < 300; ++i) reads.push_back(IoOp::Read(uint64_t(i) * 100000 + 7, back[i]));
  ASSERT_TRUE((*dev)->Submit(reads).ok());
  for (int i = 0; i < 300; ++i) EXPECT_EQ(back[i], bufs[i]) << i;
}

TEST(UringDevice, DirectWritesReplaceWhatTheCacheHeld) {
  TempDir dir;
  std::string img = dir.Join("dev.img");
  ASSERT_TRUE(CreateImageFile(img, 16 << 20, false).ok());
  auto dev = OpenDevice(img, DeviceOptions{});
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  // Every Linux file system a volume is made on takes O_DIRECT but tmpfs.
  if (!(*dev)->direct_writes()) GTEST_SKIP() << dir.path() << " does not take O_DIRECT";

  // Old bytes, synced and read once so that the page cache holds them.
  std::vector<std::byte> old = Pattern(256 << 10, 1);
  ASSERT_TRUE((*dev)->Write(1 << 20, old).ok());
  ASSERT_TRUE((*dev)->Sync().ok());
  std::vector<std::byte> back(old.size());
  ASSERT_TRUE((*dev)->Read(1 << 20, back).ok());
  ASSERT_EQ(back, old);

  // New bytes written past the cache.
  std::vector<std::byte> fresh = Pattern(old.size(), 2);
  auto* aligned = static_cast<std::byte*>(std::aligned_alloc(kBlockSize, fresh.size()));
  ASSERT_NE(aligned, nullptr);
  std::memcpy(aligned, fresh.data(), fresh.size());
  Status written = (*dev)->Submit(std::vector<IoOp>{IoOp::DirectWrite(1 << 20, {aligned, fresh.size()})});
  std::free(aligned);
  ASSERT_TRUE(written.ok()) << written.ToString();
  // A direct write from a buffer that is not aligned goes through the cache.
  std::vector<std::byte> odd(kBlockSize + 1);
  std::memcpy(odd.data() + 1, fresh.data(), kBlockSize);
  const IoOp unaligned{IoOp::Kind::kWrite, 8 << 20, odd.data() + 1, kBlockSize, /*direct=*/true};
  written = (*dev)->Submit({&unaligned, 1});
  ASSERT_TRUE(written.ok()) << written.ToString();
  Status synced = (*dev)->Sync();
  ASSERT_TRUE(synced.ok()) << synced.ToString();

  ASSERT_TRUE((*dev)->Read(1 << 20, back).ok());
  EXPECT_EQ(back, fresh) << "a read after a direct write returned the cached bytes";
  std::vector<std::byte> block(kBlockSize);
  ASSERT_TRUE((*dev)->Read(8 << 20, block).ok());
  EXPECT_TRUE(std::equal(block.begin(), block.end(), fresh.begin()));

  dev->reset();
  auto again = OpenDevice(img, DeviceOptions{});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  std::fill(back.begin(), back.end(), std::byte{0});
  ASSERT_TRUE((*again)->Read(1 << 20, back).ok());
  EXPECT_EQ(back, fresh);
  ASSERT_TRUE((*again)->Read(8 << 20, block).ok());
  EXPECT_TRUE(std::equal(block.begin(), block.end(), fresh.begin()));
}

TEST(UringDevice, ReadOnlyDeviceWritesNothingDirectly) {
  TempDir dir;
  std::string img = dir.Join("dev.img");
  ASSERT_TRUE(CreateImageFile(img, 1 << 20, false).ok());
  DeviceOptions ro;
  ro.read_only = true;
  auto dev = OpenDevice(img, ro);
  ASSERT_TRUE(dev.ok()) << dev.status().ToString();
  EXPECT_FALSE((*dev)->direct_writes());
}

TEST(UringDevice, RefusesIoBeyondTheEnd) {
  TempDir dir;
  std::string img = dir.Join("dev.img");
  ASSERT_TRUE(CreateImageFile(img, 1 << 20, false).ok());
  auto dev = OpenDevice(img, DeviceOptions{});
  std::vector<std::byte> buf(8192);
  EXPECT_EQ((*dev)->Read((1 << 20) - 4096, buf).code(), EIO);
}

TEST(UringDevice, DiscardPunchesHolesInAnImage) {
  TempDir dir;
  std::string img = dir.Join("dev.img");
  ASSERT_TRUE(CreateImageFile(img, 64 << 20, false).ok());
  auto dev = OpenDevice(img, DeviceOptions{});
  auto data = Pattern(16 << 20, 3);
  ASSERT_TRUE((*dev)->Write(0, data).ok());
  ASSERT_TRUE((*dev)->Sync().ok());
  struct stat before {}, after {};
  ::stat(img.c_str(), &before);
  ASSERT_TRUE((*dev)->Discard(0, 16 << 20).ok());
  ::stat(img.c_str(), &after);
  EXPECT_LT(after.st_blocks, before.st_blocks / 4);
}

TEST(UringDevice, OneWriterAtATime) {
  TempDir dir;
  std::string img = dir.Join("dev.img");
  ASSERT_TRUE(CreateImageFile(img, 1 << 20, false).ok());
  auto first = OpenDevice(img, DeviceOptions{});
  ASSERT_TRUE(first.ok());
  auto second = OpenDevice(img, DeviceOptions{});
  EXPECT_EQ(second.status().code(), EBUSY);
  EXPECT_NE(second.status().message().find("in use"), std::string::npos);
}

TEST(MemDevice, PowerCutDropsUnsyncedWrites) {
  MemDevice dev(1 << 20);
  auto a = Pattern(4096, 1);
  auto b = Pattern(4096, 2);
  ASSERT_TRUE(dev.Write(0, a).ok());
  ASSERT_TRUE(dev.Sync().ok());
  ASSERT_TRUE(dev.Write(0, b).ok());
  dev.DropUnsynced();
  std::vector<std::byte> back(4096);
  ASSERT_TRUE(dev.Read(0, back).ok());
  EXPECT_EQ(back, a);
}

TEST(MemDevice, FaultHookFailsChosenOperations) {
  MemDevice dev(1 << 20);
  dev.SetFaultHook([](const IoOp& op) {
    return op.kind == IoOp::Kind::kWrite && op.offset >= 8192 ? Status::Error(EIO, "injected") : Status::Ok();
  });
  auto a = Pattern(4096, 1);
  EXPECT_TRUE(dev.Write(0, a).ok());
  EXPECT_EQ(dev.Write(8192, a).code(), EIO);
}

}  // namespace
}  // namespace qcfs
