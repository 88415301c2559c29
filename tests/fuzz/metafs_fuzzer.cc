// MetaFs::Mount and MountReadOnly on a device whose metadata root and
// journal hold any bytes. The format of the input is in fuzz_util.h: the
// harness frames and checksums the records itself unless told not to, so
// that the fuzzer reaches the replay of each record type.
//
// A mount must fail or produce a state that is consistent: every extent
// inside the segment area and in a metadata segment, every file readable,
// and (read-write) a state that survives its own rewrite: after writing a
// file and syncing, mounting again finds the same files with the same sizes.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qcfs/io/mem_device.h"
#include "qcfs/meta/metafs.h"
#include "tests/fuzz/fuzz_util.h"

namespace qcfs {
namespace {

using fuzz::Span;

// Writes what fits on the device.
void PokeClamped(MemDevice* device, uint64_t offset, std::string_view bytes) {
  if (offset >= device->size()) return;
  bytes = bytes.substr(0, device->size() - offset);
  device->Poke(offset, Span(bytes));
}

// Lays the input out on the device.
uint8_t Prepare(fuzz::Input in, const MetaFsLayout& layout, MemDevice* device) {
  uint8_t flags = in.U8();
  uint64_t generation = in.U64();
  uint64_t offset = in.U64();
  uint64_t length = in.U64();
  std::array<uint8_t, 16> uuid = layout.uuid;
  if (flags & fuzz::kMetaOtherVolume) uuid[15] ^= 1;
  std::string root = fuzz::EncodeRoot(generation, offset, length, uuid, flags >> 5, 1);
  if (flags & fuzz::kMetaBadRoot) root[64] ^= 1;
  device->Poke(layout.root_offset[generation % 2], Span(root));

  if (flags & fuzz::kMetaRaw) {
    PokeClamped(device, offset, in.Rest());
    return flags;
  }
  uint64_t at = offset;
  uint64_t next = offset;
  std::string pending;
  while (!in.empty()) {
    uint8_t type = in.U8();
    if (type == fuzz::kMetaNextExtent) {
      PokeClamped(device, at, pending);
      pending.clear();
      at = next;
      continue;
    }
    std::string_view payload = in.Bytes(in.U16());
    uint64_t g = (type & fuzz::kMetaLater) ? generation + 1 : generation;
    type &= ~fuzz::kMetaLater;
    pending += fuzz::EncodeJournalRecord(type, g, payload, layout.uuid);
    if (type == 7) {  // continue at: varint offset, varint length
      Decoder d(payload);
      uint64_t o = 0, l = 0;
      if (d.Varint(&o) && d.Varint(&l)) next = o;
    }
  }
  PokeClamped(device, at, pending);
  return flags;
}

bool InSegmentArea(const MetaFsLayout& layout, const MetaFs::Extent& e) {
  uint64_t end = layout.data_offset + layout.segment_count * layout.segment_size;
  return e.offset >= layout.data_offset && e.offset <= end && e.length <= end - e.offset && e.offset % 4096 == 0 &&
         e.length % 4096 == 0;
}

// Names and sizes of the files; checks the state is consistent and readable.
std::map<std::string, uint64_t> Inspect(MetaFs* fs, const MetaFsLayout& layout) {
  std::vector<SegmentUse> uses = fs->SegmentUses();
  QCFS_FUZZ_CHECK(uses.size() == layout.segment_count, "segment table of the wrong size");
  auto check_extent = [&](const MetaFs::Extent& e) {
    QCFS_FUZZ_CHECK(InSegmentArea(layout, e), "a mounted journal holds an extent outside the segment area");
    if (e.length == 0) return;
    uint64_t first = (e.offset - layout.data_offset) / layout.segment_size;
    uint64_t last = (e.offset + e.length - 1 - layout.data_offset) / layout.segment_size;
    for (uint64_t seg = first; seg <= last; ++seg) {
      QCFS_FUZZ_CHECK(uses[seg] == SegmentUse::kMeta, "an extent lies in a segment not recorded as metadata");
    }
  };
  for (const MetaFs::Extent& e : fs->JournalExtents()) check_extent(e);
  std::vector<std::string> names = fs->List("");
  std::vector<std::string> owners;
  for (auto& [name, extents] : fs->FileExtents()) {
    owners.push_back(name);
    for (const MetaFs::Extent& e : extents) check_extent(e);
  }
  QCFS_FUZZ_CHECK(names == owners, "the listed names are not the files that own extents (two names for one file?)");
  MetaFsUsage u = fs->Usage();
  QCFS_FUZZ_CHECK(u.meta_segments + u.free_segments <= layout.segment_count, "segment counts exceed the device");

  std::map<std::string, uint64_t> files;
  std::vector<std::byte> buf(8192);
  for (const std::string& name : names) {
    QCFS_FUZZ_CHECK(fs->Exists(name), "a listed file does not exist");
    auto size = fs->FileSize(name);
    QCFS_FUZZ_CHECK(size.ok(), "a listed file has no size");
    files[name] = *size;
    auto file = fs->Open(name);
    QCFS_FUZZ_CHECK(file.ok(), "a listed file does not open");
    QCFS_FUZZ_CHECK((*file)->size() == *size, "an open file's size differs from FileSize");
    (*file)->Read(0, buf).IgnoreError();
    if (*size > buf.size()) (*file)->Read(*size - buf.size(), buf).IgnoreError();
  }
  return files;
}

}  // namespace
}  // namespace qcfs

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qcfs;
  const MetaFsLayout layout = fuzz::FuzzLayout();
  MemDevice device(fuzz::DeviceSize(layout));
  uint8_t flags = Prepare(fuzz::Input(data, size), layout, &device);

  const auto damage = (flags & fuzz::kMetaRollBack) ? MetaFs::Damage::kRollBack : MetaFs::Damage::kRefuse;
  if (flags & fuzz::kMetaReadOnly) {
    auto fs = MetaFs::MountReadOnly(&device, layout, damage);
    if (fs.ok()) Inspect(fs->get(), layout);
    return 0;
  }
  auto fs_or = MetaFs::Mount(&device, layout, damage);
  if (!fs_or.ok()) return 0;
  std::unique_ptr<MetaFs> fs = std::move(fs_or).value();
  std::map<std::string, uint64_t> files = Inspect(fs.get(), layout);

  // Write a file into the mounted state and make it durable.
  const std::string probe_name = "fuzz-probe";
  std::string probe(10000, 'p');
  bool written = false;
  if (auto f = fs->Create(probe_name); f.ok()) {
    written = (*f)->Append(Span(probe)).ok() && (*f)->Sync().ok();
  }
  fs.reset();
  if (!written) return 0;  // a full device, say
  files[probe_name] = probe.size();

  auto again = MetaFs::MountReadOnly(&device, layout);
  if (!again.ok()) std::fprintf(stderr, "remount: %s\n", again.status().ToString().c_str());
  QCFS_FUZZ_CHECK(again.ok(), "a journal that mounted does not mount again after a synced write");
  std::map<std::string, uint64_t> after = Inspect(again->get(), layout);
  if (after != files) {
    for (auto& [name, size] : files) std::fprintf(stderr, "before: %s %llu\n", name.c_str(), (unsigned long long)size);
    for (auto& [name, size] : after) std::fprintf(stderr, "after:  %s %llu\n", name.c_str(), (unsigned long long)size);
  }
  QCFS_FUZZ_CHECK(after == files, "the files differ after a synced write and a new mount");
  auto f = (*again)->Open(probe_name);
  QCFS_FUZZ_CHECK(f.ok(), "the probe file does not open");
  std::string back(probe.size(), '\0');
  auto n = (*f)->Read(0, std::span<std::byte>(reinterpret_cast<std::byte*>(back.data()), back.size()));
  QCFS_FUZZ_CHECK(n.ok() && *n == probe.size() && back == probe, "the probe file reads back wrong");
  return 0;
}
