#include "qcfs/meta/metafs.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "qcfs/core/coding.h"
#include "qcfs/core/log.h"

namespace qcfs {

namespace {

constexpr uint64_t kBlock = 4096;
constexpr char kRootMagic[8] = {'Q', 'C', 'F', 'S', 'M', 'E', 'T', 'A'};
constexpr uint64_t kJournalExtent = 1ull << 20;  // journal grows by this much
constexpr uint64_t kMaxJournalExtent = 64ull << 20;  // no journal extent is larger (a segment at most)
constexpr uint64_t kRecordOverhead = 4 + 1 + 8 + 8;
constexpr uint64_t kNextReserve = kRecordOverhead + 32;  // room for a "continue at" record (three varints)
constexpr uint64_t kCompactAt = 8ull << 20;              // journal bytes before a rewrite

enum RecordType : uint8_t {
  kSegUse = 1,
  kFileCreate = 2,
  kFileDelete = 3,
  kFileRename = 4,
  kFileExtent = 5,
  kFileSize = 6,
  kJournalNext = 7,
  kSegUseMap = 8,
  kFileSums = 9,
};
// A kFileSums record holds at most this many block checksums.
constexpr uint64_t kSumsPerRecord = 1024;
// A kSegUseMap record covers this many segments (2 bits each).
constexpr uint32_t kSegMapSpan = 1u << 16;

uint64_t Seed(const std::array<uint8_t, 16>& uuid) { return LoadLE64(uuid.data()); }

uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

std::span<std::byte> Bytes(std::string& s) { return {reinterpret_cast<std::byte*>(s.data()), s.size()}; }

// The checksum of a metadata file's block: of the file's bytes in it (the
// whole block, or the part before the file's end). Never 0, which stands for
// "not known" (a block written before mirroring).
uint32_t BlockSum(const void* p, size_t n) {
  const auto sum = static_cast<uint32_t>(XXH3_64bits(p, n));
  return sum == 0 ? 1 : sum;
}

// One journal record: u32 length, u8 type, u64 generation, payload, u64 xxh3.
std::string EncodeRecord(uint8_t type, uint64_t generation, std::string_view payload, uint64_t seed) {
  std::string r;
  char head[13];
  StoreLE32(head, static_cast<uint32_t>(payload.size()));
  head[4] = static_cast<char>(type);
  StoreLE64(head + 5, generation);
  r.append(head, 13);
  r.append(payload);
  char sum[8];
  StoreLE64(sum, XXH3_64bits_withSeed(r.data(), r.size(), seed));
  r.append(sum, 8);
  return r;
}

}  // namespace

struct MetaFs::FileState {
  FileState() : appended(XXH3_createState()) { XXH3_64bits_reset(appended); }
  ~FileState() { XXH3_freeState(appended); }
  FileState(const FileState&) = delete;
  FileState& operator=(const FileState&) = delete;

  uint64_t id = 0;
  std::string name;
  uint64_t size = 0;            // bytes on the device
  uint64_t journaled_size = 0;  // size the journal records
  uint64_t allocated = 0;       // bytes of extents
  std::vector<Extent> extents;
  // The mirror of each extent, index for index (same length); offset 0:
  // none (an extent written before mirroring).
  std::vector<uint64_t> mirrors;
  // Checksum of each block up to the size (BlockSum; 0: not known).
  std::vector<uint32_t> sums;
  // The file's bytes in its last block, when the size is not block aligned
  // (the next append extends that block's checksum); loaded on demand.
  std::string tail;
  bool tail_loaded = false;
  // Bytes from here to the size were appended past the last completed sync
  // (found at replay): one copy of their blocks may not have reached the
  // device. A read-write mount rewrites that copy; until then it is not
  // damage. UINT64_MAX: none.
  uint64_t settled = UINT64_MAX;
  int handles = 0;
  bool deleted = false;
  // Hash of the bytes [journaled_size, size): a size record carries it, so
  // that replay can tell whether the bytes it covers reached the device.
  XXH3_state_t* appended;
};

struct MetaFs::FileView {
  std::string name;
  uint64_t size = 0;  // reads never go past it
  std::vector<Extent> extents;
  std::vector<uint64_t> mirrors;
  uint64_t settled = UINT64_MAX;  // FileState::settled
  uint64_t first_block = 0;     // of `sums`
  std::vector<uint32_t> sums;   // blocks [first_block, ...) of the range read
};

namespace {

// Payloads of kFileSums records for blocks [first, first + count) of file `id`:
// varint id, varint first block, varint count, u32 checksum per block.
std::vector<std::string> SumsPayloads(uint64_t id, const std::vector<uint32_t>& sums, uint64_t first, uint64_t count) {
  std::vector<std::string> out;
  for (uint64_t at = first; at < first + count; at += kSumsPerRecord) {
    const uint64_t n = std::min(kSumsPerRecord, first + count - at);
    std::string p;
    Encoder e(&p);
    e.Varint(id);
    e.Varint(at);
    e.Varint(n);
    for (uint64_t b = at; b < at + n; ++b) e.Fixed32(b < sums.size() ? sums[b] : 0);
    out.push_back(std::move(p));
  }
  return out;
}

// Maps [offset, offset + n) of a file laid out in `extents` onto the device:
// calls op(device offset, buffer offset, length) for each piece; `mirror`
// picks the mirror copy, skipping pieces of extents that have none (from
// before mirroring). Returns the bytes mapped: less than n where the file
// ends first or a piece has no mirror.
template <typename Op>
uint64_t MapExtents(const std::vector<MetaFs::Extent>& extents, const std::vector<uint64_t>& mirrors, bool mirror,
                    uint64_t offset, uint64_t n, Op op) {
  uint64_t file_pos = 0;
  uint64_t done = 0, mapped = 0;
  for (size_t i = 0; i < extents.size() && done < n; ++i) {
    const MetaFs::Extent& e = extents[i];
    uint64_t ext_end = file_pos + e.length;
    uint64_t from = offset + done;
    if (from < ext_end) {
      uint64_t len = std::min<uint64_t>(ext_end - from, n - done);
      if (!mirror) {
        op(e.offset + (from - file_pos), done, len);
        mapped += len;
      } else if (i < mirrors.size() && mirrors[i] != 0) {
        op(mirrors[i] + (from - file_pos), done, len);
        mapped += len;
      }
      done += len;
    }
    file_pos = ext_end;
  }
  return mapped;
}

}  // namespace

// ---------------------------------------------------------------- setup

MetaFs::MetaFs(Device* device, const MetaFsLayout& layout) : device_(device), layout_(layout) {
  use_.assign(layout.segment_count, SegmentUse::kFree);
  RecountUse();
}

void MetaFs::RecountUse() {
  free_segments_ = std::count(use_.begin(), use_.end(), SegmentUse::kFree);
  meta_segments_ = std::count(use_.begin(), use_.end(), SegmentUse::kMeta);
  free_hint_ = 0;
}

MetaFs::~MetaFs() = default;

Result<std::unique_ptr<MetaFs>> MetaFs::Format(Device* device, const MetaFsLayout& layout) {
  std::unique_ptr<MetaFs> fs(new MetaFs(device, layout));
  std::lock_guard lock(fs->mu_);
  QCFS_RETURN_IF_ERROR(fs->StartJournal(1));
  QCFS_RETURN_IF_ERROR(device->Sync());
  return fs;
}

Result<std::unique_ptr<MetaFs>> MetaFs::Mount(Device* device, const MetaFsLayout& layout, Damage damage) {
  std::unique_ptr<MetaFs> fs(new MetaFs(device, layout));
  std::lock_guard lock(fs->mu_);
  QCFS_RETURN_IF_ERROR(fs->Replay(false, damage == Damage::kRollBack));
  return fs;
}

Result<std::unique_ptr<MetaFs>> MetaFs::MountReadOnly(Device* device, const MetaFsLayout& layout, Damage damage) {
  std::unique_ptr<MetaFs> fs(new MetaFs(device, layout));
  std::lock_guard lock(fs->mu_);
  QCFS_RETURN_IF_ERROR(fs->Replay(true, damage == Damage::kRollBack));
  fs->read_only_ = true;
  return fs;
}

Status MetaFs::WriteRoot(uint64_t generation, const Extent& first, uint64_t mirror, uint64_t synced_records) {
  std::string block(kBlock, '\0');
  char* p = block.data();
  const uint64_t sequence = ++root_sequence_;
  std::memcpy(p, kRootMagic, 8);
  StoreLE64(p + 8, generation);
  StoreLE64(p + 16, first.offset);
  StoreLE64(p + 24, first.length);
  std::memcpy(p + 32, layout_.uuid.data(), 16);
  StoreLE64(p + 48, synced_records);
  StoreLE64(p + 56, sequence);
  StoreLE64(p + 64, XXH3_64bits(p, 64));
  // The mirror after the first checksum, with its own: a qcfs from before
  // mirroring reads [0, 72) and the journal's first copy, which is whole.
  StoreLE64(p + 72, mirror);
  StoreLE64(p + 80, XXH3_64bits(p, 80));
  // Alternate slots: the other root stays valid while this one is written.
  return device_->Write(layout_.root_offset[sequence % 2], Bytes(block));
}

Status MetaFs::StartJournal(uint64_t generation) {
  // A generation Replay would refuse must never be written: the volume
  // would mount once and never again. Each mount and compaction adds one,
  // so only a damaged root gets here; nothing is written.
  if (generation == 0 || generation == UINT64_MAX) {
    return Status::Errorf(EUCLEAN,
                          "the metadata journal cannot start generation {} (its root is damaged); mount read-only "
                          "(-o ro) to copy the data off",
                          generation);
  }
  // A fresh journal in new blocks, holding the whole state, then the root.
  // The state is a list of records; where it outgrows an extent it goes on
  // in further extents chained with "continue at" records (as appends do),
  // so its size is bounded by free metadata space, not by a segment.
  std::vector<std::string> records;
  uint64_t state_bytes = 0;
  auto add = [&](uint8_t type, const std::string& payload) {
    records.push_back(EncodeRecord(type, generation, payload, Seed(layout_.uuid)));
    state_bytes += records.back().size();
  };
  // No journal extent is larger than a segment, nor than replay accepts.
  const uint64_t max_extent = std::min<uint64_t>(layout_.segment_size, kMaxJournalExtent) / kBlock * kBlock;
  // Size the first extent for the state plus room to grow.
  uint64_t estimate = use_.size() / 4 + 64 * (use_.size() / kSegMapSpan + 1);
  for (auto& [id, f] : files_) estimate += 64 + f->name.size() + 32 * f->extents.size() + 4 * f->sums.size() + 64;
  uint64_t want = std::min<uint64_t>(RoundUp(std::max<uint64_t>(kJournalExtent, estimate * 2), kBlock), max_extent);
  // The new journal lists every segment itself: allocations journal nothing.
  struct Compacting {
    bool& flag;
    bool was;
    explicit Compacting(bool& f) : flag(f), was(f) { flag = true; }
    ~Compacting() { flag = was; }
  };
  std::vector<Extent> extents, mirrors;  // of the new journal, index for index
  {
    Compacting c(compacting_);
    QCFS_ASSIGN_OR_RETURN(auto pair, AllocateJournalExtent(want / kBlock, 0));
    extents.push_back(pair.first);
    mirrors.push_back(pair.second);
  }
  // Segments in use (the first extent's included, now that it is
  // allocated): 2 bits per segment, skipping spans that are all free.
  // Segments taken for further extents below may be listed free: replay
  // derives metadata segments from the extents anyway.
  // A record covers fewer segments where extents are small (8 KiB segments).
  const uint64_t span = std::min<uint64_t>(kSegMapSpan, 2 * max_extent);
  for (uint64_t first_seg = 0; first_seg < use_.size(); first_seg += span) {
    const auto count = static_cast<uint32_t>(std::min<uint64_t>(span, use_.size() - first_seg));
    std::string bits((count + 3) / 4, '\0');
    bool any = false;
    for (uint32_t i = 0; i < count; ++i) {
      auto u = static_cast<uint8_t>(use_[first_seg + i]);
      any |= u != 0;
      bits[i / 4] = static_cast<char>(static_cast<uint8_t>(bits[i / 4]) | (u << (2 * (i % 4))));
    }
    if (!any) continue;
    std::string p;
    Encoder e(&p);
    e.Fixed32(static_cast<uint32_t>(first_seg));
    e.Fixed32(count);
    e.Bytes(bits);
    add(kSegUseMap, p);
  }
  for (auto& [id, f] : files_) {
    if (f->deleted) continue;
    std::string p;
    Encoder(&p).Varint(id);
    Encoder(&p).String(f->name);
    add(kFileCreate, p);
    for (size_t i = 0; i < f->extents.size(); ++i) {
      std::string q;
      Encoder e(&q);
      e.Varint(id);
      e.Varint(f->extents[i].offset);
      e.Varint(f->extents[i].length);
      if (f->mirrors[i] != 0) e.Varint(f->mirrors[i]);
      add(kFileExtent, q);
    }
    const uint64_t blocks = RoundUp(f->size, kBlock) / kBlock;
    f->sums.resize(blocks);
    for (const std::string& q : SumsPayloads(id, f->sums, 0, blocks)) add(kFileSums, q);
    std::string z;
    Encoder(&z).Varint(id);
    Encoder(&z).Varint(f->size);
    add(kFileSize, z);  // no hash: the sync below covers its bytes
  }
  // Lay the records out over the extents: each extent keeps room for a
  // "continue at" record after its last one (the last extent, for the
  // appends that follow).
  auto give_back = [&](Status s) {
    for (const Extent& e : extents) FreeExtent(e);
    for (const Extent& e : mirrors) FreeExtent(e);
    return s;
  };
  std::vector<std::string> contents(1);  // each extent's bytes
  uint64_t count = 0;                    // records of the new generation
  uint64_t left = state_bytes;
  for (std::string& r : records) {
    if (contents.back().size() + r.size() + kNextReserve > extents.back().length) {
      const uint64_t blocks = std::min<uint64_t>(RoundUp(std::max<uint64_t>(kJournalExtent, left * 2), kBlock),
                                                 max_extent) / kBlock;
      auto pair = [&] {
        Compacting c(compacting_);
        return AllocatePair(blocks, extents.back().offset + extents.back().length,
                            mirrors.back().offset + mirrors.back().length);
      }();
      if (!pair.ok()) {
        return give_back(Status::Errorf(pair.status().code(),
                                        "metadata journal state of {} bytes: no room for it ({})", state_bytes,
                                        pair.status().message()));
      }
      const auto [next, mirror] = *pair;
      std::string p;
      Encoder e(&p);
      e.Varint(next.offset);
      e.Varint(next.length);
      e.Varint(mirror.offset);
      contents.back().append(EncodeRecord(kJournalNext, generation, p, Seed(layout_.uuid)));
      ++count;
      extents.push_back(next);
      mirrors.push_back(mirror);
      contents.emplace_back();
      if (r.size() + kNextReserve > next.length) {
        return give_back(Status::Errorf(EINVAL, "metadata journal record of {} bytes does not fit an extent of {}",
                                        r.size(), next.length));
      }
    }
    contents.back().append(r);
    left -= r.size();
    std::string().swap(r);  // the state is held once, not twice
    ++count;
  }
  for (auto& [id, f] : files_) {
    if (f->deleted) continue;
    f->journaled_size = f->size;
    XXH3_64bits_reset(f->appended);
  }
  // Write both copies of every extent (zero the rest of the last record's
  // block) and make them durable before the root points at them.
  const std::string last = contents.back();
  std::vector<IoOp> writes;
  for (size_t i = 0; i < extents.size(); ++i) {
    contents[i].resize(RoundUp(contents[i].size() + 1, kBlock), '\0');
    writes.push_back(IoOp::Write(extents[i].offset, Bytes(contents[i])));
    writes.push_back(IoOp::Write(mirrors[i].offset, Bytes(contents[i])));
  }
  QCFS_RETURN_IF_ERROR(device_->Submit(writes));
  QCFS_RETURN_IF_ERROR(device_->Sync());
  // Both roots, one after the other: if one is damaged later, the other
  // still names this generation (the previous one's blocks are reused).
  for (int slot = 0; slot < 2; ++slot) {
    QCFS_RETURN_IF_ERROR(WriteRoot(generation, extents.front(), mirrors.front().offset, count));
    QCFS_RETURN_IF_ERROR(device_->Sync());
  }
  // The old journal's blocks (both copies) are free once the new roots are durable.
  for (const Extent& old : journal_) FreeExtent(old);
  for (const Extent& old : mirror_) FreeExtent(old);
  generation_ = generation;
  journal_ = extents;
  mirror_ = mirrors;
  journal_records_ = count;
  root_synced_ = count;
  journal_pos_ = extents.back().offset + last.size();
  journal_end_ = extents.back().offset + extents.back().length;
  journal_bytes_ = last.size();
  for (size_t i = 0; i + 1 < extents.size(); ++i) journal_bytes_ += extents[i].length;
  tail_offset_ = (journal_pos_ / kBlock) * kBlock;
  tail_ = last.substr(tail_offset_ - extents.back().offset);
  return Status::Ok();
}

Status MetaFs::Replay(bool read_only, bool roll_back) {
  // The valid root with the higher sequence.
  uint64_t generation = 0, sequence = 0, synced = 0;
  Extent first{0, 0};
  uint64_t mirror_at = 0;  // the first extent's mirror; 0: the journal has one copy
  int valid = 0;
  for (int slot = 0; slot < 2; ++slot) {
    std::string block(kBlock, '\0');
    QCFS_RETURN_IF_ERROR(device_->Read(layout_.root_offset[slot], Bytes(block)));
    const char* p = block.data();
    if (std::memcmp(p, kRootMagic, 8) != 0 || LoadLE64(p + 64) != XXH3_64bits(p, 64)) continue;
    if (std::memcmp(p + 32, layout_.uuid.data(), 16) != 0) continue;
    // Generations start at 1 and a mount starts the next one.
    if (LoadLE64(p + 8) == 0 || LoadLE64(p + 8) == UINT64_MAX) continue;
    // The mirror and its checksum; both zero in a root from before mirroring.
    uint64_t mirror = 0;
    if (LoadLE64(p + 80) == XXH3_64bits(p, 80)) {
      mirror = LoadLE64(p + 72);
    } else if (LoadLE64(p + 72) != 0 || LoadLE64(p + 80) != 0) {
      continue;
    }
    ++valid;
    if (LoadLE64(p + 56) > sequence) {
      sequence = LoadLE64(p + 56);
      generation = LoadLE64(p + 8);
      first = {LoadLE64(p + 16), LoadLE64(p + 24)};
      synced = LoadLE64(p + 48);
      mirror_at = mirror;
    }
  }
  if (generation == 0) {
    return Status::Error(EUCLEAN, "no valid metadata root on the device (not formatted by this qcfs, or damaged)");
  }
  if (valid == 1) Log(LogLevel::kWarning, "one of the two metadata roots is damaged; using the other");
  root_sequence_ = sequence;
  // An extent a record names: whole blocks inside the segment area (no
  // overflow), and for the journal at most 64 MiB.
  const uint64_t area_end = layout_.SegmentOffset(0) + layout_.segment_count * layout_.segment_size;
  auto valid_extent = [&](uint64_t offset, uint64_t length) {
    return offset % kBlock == 0 && length % kBlock == 0 && length > 0 && offset >= layout_.data_offset &&
           offset <= area_end && length <= area_end - offset;
  };
  auto overlaps = [](const Extent& a, const Extent& b) {
    return a.offset < b.offset + b.length && b.offset < a.offset + a.length;
  };
  const bool mirrored = mirror_at != 0;
  if (!valid_extent(first.offset, first.length) || first.length > kMaxJournalExtent ||
      (mirrored && (!valid_extent(mirror_at, first.length) || overlaps(first, {mirror_at, first.length})))) {
    return Status::Error(EUCLEAN, "the metadata root points outside the device");
  }
  // Reads one copy of a journal extent. With two copies, blocks of one that
  // cannot be read are left zero (their records do not verify, and the
  // other copy's are taken); with one, a read error fails the mount.
  auto read_copy = [&](const Extent& e, std::string* out) -> Status {
    out->assign(e.length, '\0');
    Status read = device_->Read(e.offset, Bytes(*out));
    if (read.ok() || !mirrored) return read;
    Log(LogLevel::kWarning, "metadata journal at {}: {}; reading it block by block", e.offset, read.ToString());
    for (uint64_t at = 0; at < e.length; at += kBlock) {
      std::span<std::byte> block = Bytes(*out).subspan(at, kBlock);
      if (!device_->Read(e.offset + at, block).ok()) std::fill(block.begin(), block.end(), std::byte{0});
    }
    return Status::Ok();
  };
  generation_ = generation;
  journal_ = {first};
  mirror_.clear();
  if (mirrored) mirror_.push_back({mirror_at, first.length});
  copies_ = JournalCopies{};
  copies_.mirrored = mirrored;
  Extent current = first;
  std::string buf, mbuf;  // the extent being replayed: primary and mirror
  QCFS_RETURN_IF_ERROR(read_copy(current, &buf));
  if (mirrored) QCFS_RETURN_IF_ERROR(read_copy(mirror_.back(), &mbuf));
  // The size of the record at `at` of one copy when it verifies, else 0.
  const uint64_t seed = Seed(layout_.uuid);
  auto verifies = [&](const std::string& b, uint64_t at) -> uint64_t {
    if (at + kRecordOverhead > b.size()) return 0;
    const char* p = b.data() + at;
    const uint32_t len = LoadLE32(p);
    if (at + kRecordOverhead + len > b.size()) return 0;
    if (LoadLE64(p + 5) != generation) return 0;
    if (LoadLE64(p + 13 + len) != XXH3_64bits_withSeed(p, 13 + len, seed)) return 0;
    return kRecordOverhead + len;
  };
  uint64_t pos = 0;
  uint64_t records = 0;
  struct Appended {
    uint64_t record;  // its index in the journal
    uint64_t from, to, hash;
    size_t undo_begin, undo_end;  // its block checksums: entries [undo_begin, undo_end) of the file's undo log
  };
  std::map<uint64_t, std::vector<Appended>> unverified;  // file id -> appends no completed sync covers
  // Block checksums replaced since the file's last durable size record, in
  // order: an append found missing, or checksums whose size record never
  // reached the journal (its write failed, or the journal ends before it),
  // put the earlier ones back.
  struct SumUndo {
    uint64_t block;
    uint32_t old;
  };
  std::map<uint64_t, std::vector<SumUndo>> sum_undo;  // file id -> replaced checksums
  std::map<uint64_t, size_t> undo_at_size;           // file id -> its undo log's length at its last size record
  for (;;) {
    uint64_t size = verifies(buf, pos);
    if (mirrored) {
      // Both copies hold the same bytes at the same place. Past the records
      // the root counts, one copy may lack a record that was being written
      // at a power cut: not damage.
      const uint64_t mirror_size = verifies(mbuf, pos);
      const bool durable = records < synced;
      if (size == 0 && mirror_size != 0) {
        buf.replace(pos, mirror_size, mbuf, pos, mirror_size);  // replay (and the tail) read buf
        size = mirror_size;
        if (durable) ++copies_.primary_damaged;
      } else if (size != 0 && durable && (mirror_size != size || mbuf.compare(pos, size, buf, pos, size) != 0)) {
        ++copies_.mirror_damaged;
      }
    }
    if (size == 0) break;  // the end, or a torn write (in both copies)
    const char* p = buf.data() + pos;
    const uint32_t len = LoadLE32(p);
    const uint8_t type = static_cast<uint8_t>(p[4]);
    Decoder d(std::string_view(p + 13, len));
    bool ok = true;
    switch (type) {
      case kSegUse: {
        uint32_t s;
        uint8_t u;
        ok = d.Fixed32(&s) && d.U8(&u) && s < use_.size() && u <= 2;
        if (ok) use_[s] = static_cast<SegmentUse>(u);
        break;
      }
      case kSegUseMap: {
        uint32_t first_seg, count;
        std::string_view bits;
        ok = d.Fixed32(&first_seg) && d.Fixed32(&count) && count <= kSegMapSpan &&
             uint64_t{first_seg} + count <= use_.size() && d.Bytes((count + 3) / 4, &bits);
        for (uint32_t i = 0; ok && i < count; ++i) {
          uint8_t u = (static_cast<uint8_t>(bits[i / 4]) >> (2 * (i % 4))) & 3;
          ok = u <= 2;
          use_[first_seg + i] = static_cast<SegmentUse>(u);
        }
        break;
      }
      case kFileCreate: {
        uint64_t id;
        std::string_view name;
        // An id is created once per generation's state: a second create of
        // a live id would leave two names for one file.
        ok = d.Varint(&id) && d.String(&name) && !files_.contains(id);
        if (ok) {
          auto it = names_.find(std::string(name));
          if (it != names_.end()) files_.erase(it->second);
          auto f = std::make_shared<FileState>();
          f->id = id;
          f->name.assign(name);
          files_[id] = f;
          names_[f->name] = id;
          next_id_ = std::max(next_id_, id + 1);
        }
        break;
      }
      case kFileDelete: {
        uint64_t id;
        ok = d.Varint(&id);
        if (ok) {
          auto it = files_.find(id);
          if (it != files_.end()) {
            names_.erase(it->second->name);
            files_.erase(it);
          }
        }
        break;
      }
      case kFileRename: {
        uint64_t id;
        std::string_view name;
        ok = d.Varint(&id) && d.String(&name);
        auto it = files_.find(id);
        if (ok && it != files_.end()) {
          names_.erase(it->second->name);
          auto other = names_.find(std::string(name));
          if (other != names_.end()) files_.erase(other->second);
          it->second->name.assign(name);
          names_[it->second->name] = id;
        }
        break;
      }
      case kFileExtent: {
        // varint id, offset, length, and the mirror's varint offset when it has one.
        uint64_t id, off, length, moff = 0;
        ok = d.Varint(&id) && d.Varint(&off) && d.Varint(&length) && valid_extent(off, length);
        if (ok && !d.done()) ok = d.Varint(&moff) && valid_extent(moff, length) && !overlaps({off, length}, {moff, length});
        auto it = files_.find(id);
        if (ok && it != files_.end()) {
          it->second->extents.push_back({off, length});
          it->second->mirrors.push_back(moff);
          it->second->allocated += length;
        }
        break;
      }
      case kFileSums: {
        uint64_t id, first, n;
        ok = d.Varint(&id) && d.Varint(&first) && d.Varint(&n) && n <= kSumsPerRecord;
        auto it = files_.find(id);
        ok = ok && (it == files_.end() ||
                    (first <= it->second->allocated / kBlock && n <= it->second->allocated / kBlock - first));
        std::vector<uint32_t> got(ok ? n : 0);
        for (uint64_t i = 0; ok && i < n; ++i) ok = d.Fixed32(&got[i]);
        if (ok && it != files_.end()) {
          FileState& f = *it->second;
          if (f.sums.size() < first + n) f.sums.resize(first + n, 0);
          for (uint64_t i = 0; i < n; ++i) {
            sum_undo[id].push_back({first + i, f.sums[first + i]});
            f.sums[first + i] = got[i];
          }
        }
        break;
      }
      case kFileSize: {
        uint64_t id, size, hash = 0;
        ok = d.Varint(&id) && d.Varint(&size);
        const bool hashed = ok && !d.done();
        ok = ok && (!hashed || d.Fixed64(&hash));
        auto it = files_.find(id);
        if (ok && it != files_.end()) {
          FileState& f = *it->second;
          const uint64_t prev = f.size;
          f.size = std::min(size, f.allocated);
          f.journaled_size = f.size;
          // Bytes appended since the last sync marker may not be on the
          // device even though this record is: checked after replay.
          const size_t undo_end = sum_undo.contains(id) ? sum_undo[id].size() : 0;
          if (records < synced || !hashed) {
            // Durable (or a truncation): the checksums before it stand.
            if (!hashed) unverified.erase(id);
            sum_undo.erase(id);
            undo_at_size.erase(id);
          } else {
            if (f.size > prev) unverified[id].push_back({records, prev, f.size, hash, undo_at_size[id], undo_end});
            undo_at_size[id] = undo_end;
          }
        }
        break;
      }
      case kJournalNext: {
        // varint offset, varint length, and in a mirrored journal the mirror's varint offset.
        uint64_t off, length, moff = 0;
        ok = d.Varint(&off) && d.Varint(&length) && valid_extent(off, length) && length <= kMaxJournalExtent;
        if (ok && mirrored) {
          ok = d.Varint(&moff) && valid_extent(moff, length) && !overlaps({off, length}, {moff, length});
        }
        // The journal never continues into itself (replay would loop).
        for (size_t i = 0; ok && i < journal_.size(); ++i) {
          ok = !overlaps({off, length}, journal_[i]) && (!mirrored || !overlaps({moff, length}, journal_[i]));
        }
        for (size_t i = 0; ok && i < mirror_.size(); ++i) {
          ok = !overlaps({off, length}, mirror_[i]) && !overlaps({moff, length}, mirror_[i]);
        }
        if (ok) {
          current = {off, length};
          journal_.push_back(current);
          QCFS_RETURN_IF_ERROR(read_copy(current, &buf));
          if (mirrored) {
            mirror_.push_back({moff, length});
            QCFS_RETURN_IF_ERROR(read_copy(mirror_.back(), &mbuf));
          }
          pos = 0;
          ++records;
          continue;
        }
        break;
      }
      default:
        ok = false;
    }
    if (!ok) {
      return Status::Errorf(EUCLEAN, "metadata journal record {} (type {}) is malformed", records, type);
    }
    pos += kRecordOverhead + len;
    ++records;
  }
  // The root says how many records a completed sync made durable: the
  // journal ending before that is damage, not a crash. Going on would roll
  // the metadata back silently.
  if (records < synced) {
    if (!roll_back) {
      return Status::Errorf(EUCLEAN,
                            "the metadata journal is damaged{}: it ends at record {} but {} were durable; run qcfs "
                            "check --repair to roll the metadata back to record {} (later changes are lost)",
                            mirrored ? " in both its copies" : "", records, synced, records);
    }
    Log(LogLevel::kError, "the metadata journal is damaged after record {} of {}: rolling back to it", records, synced);
    rolled_back_ = fmt::format("the metadata journal was damaged after record {} of {}; rolled back to it", records,
                               synced);
  }
  // Checksums journaled for an append whose size record is not in the
  // journal (its write failed, or the journal ends between them) describe
  // bytes the file does not hold: the earlier ones stand.
  for (auto& [id, undo] : sum_undo) {
    auto it = files_.find(id);
    const size_t keep = undo_at_size.contains(id) ? undo_at_size[id] : 0;
    for (size_t i = undo.size(); i > keep; --i) {
      if (it != files_.end() && undo[i - 1].block < it->second->sums.size()) {
        it->second->sums[undo[i - 1].block] = undo[i - 1].old;
      }
    }
    undo.resize(std::min(keep, undo.size()));
  }
  // A size record may have reached the device without the bytes it covers
  // (writes between syncs land in any order): a file ends where its
  // appended bytes stop matching what its records say they were.
  for (auto& [id, appends] : unverified) {
    auto it = files_.find(id);
    if (it == files_.end()) continue;
    FileState& f = *it->second;
    std::vector<SumUndo>& undo = sum_undo[id];
    // The checksums as they were after log entry `end` (later ones undone).
    auto sums_before = [&](size_t end) {
      std::vector<uint32_t> sums = f.sums;
      for (size_t i = undo.size(); i > end; --i) {
        if (undo[i - 1].block < sums.size()) sums[undo[i - 1].block] = undo[i - 1].old;
      }
      return sums;
    };
    f.settled = appends.front().from;
    for (const Appended& a : appends) {
      // Read as of that record: its size, and its blocks' checksums.
      std::vector<uint32_t> as_of = sums_before(a.undo_end);
      const uint64_t saved_size = f.size;
      f.size = a.to;
      f.sums.swap(as_of);
      FileView view = ViewOf(f, a.from, a.to - a.from);
      f.sums.swap(as_of);
      f.size = saved_size;
      std::string bytes(a.to - a.from, '\0');
      Status read = ReadView(view, a.from, Bytes(bytes));
      if (read.ok() && XXH3_64bits(bytes.data(), bytes.size()) == a.hash) continue;
      Log(LogLevel::kInfo, "metadata file {}: bytes {}..{} did not reach the device; it ends at {}", f.name, a.from,
          a.to, a.from);
      f.sums = sums_before(a.undo_begin);
      f.size = f.journaled_size = a.from;
      break;
    }
  }
  // Each file has a checksum (or 0: not known) for every block up to its size.
  for (auto& [id, f] : files_) {
    f->sums.resize(RoundUp(f->size, kBlock) / kBlock, 0);
    if (f->settled >= f->size) f->settled = UINT64_MAX;
  }
  journal_pos_ = current.offset + pos;
  journal_end_ = current.offset + current.length;
  journal_records_ = records;
  journal_bytes_ = 0;
  for (size_t i = 0; i + 1 < journal_.size(); ++i) journal_bytes_ += journal_[i].length;
  journal_bytes_ += pos;
  tail_offset_ = (journal_pos_ / kBlock) * kBlock;
  tail_ = buf.substr(tail_offset_ - current.offset, journal_pos_ - tail_offset_);

  // Blocks in use are those of files and of the journal; their segments are metadata's.
  for (uint32_t s = 0; s < use_.size(); ++s) {
    if (use_[s] == SegmentUse::kMeta) use_[s] = SegmentUse::kFree;
  }
  for (const Extent& j : journal_) MarkUsed(j);
  for (const Extent& j : mirror_) MarkUsed(j);
  for (auto& [id, f] : files_) {
    for (size_t i = 0; i < f->extents.size(); ++i) {
      MarkUsed(f->extents[i]);
      if (f->mirrors[i] != 0) MarkUsed({f->mirrors[i], f->extents[i].length});
    }
  }
  for (auto& [seg, m] : meta_) use_[seg] = SegmentUse::kMeta;
  RecountUse();
  qcfs::Log(LogLevel::kDebug, "metadata journal: generation {}, {} records, {} files", generation_, records, files_.size());
  if (copies_.primary_damaged > 0) {
    Log(LogLevel::kWarning, "metadata journal: {} record(s) repaired from its mirror copy{}", copies_.primary_damaged,
        read_only ? "" : "; both copies are rewritten now");
  }
  if (copies_.mirror_damaged > 0) {
    Log(LogLevel::kWarning, "metadata journal: {} record(s) of its mirror copy are damaged{}", copies_.mirror_damaged,
        read_only ? "" : "; both copies are rewritten now");
  }
  if (read_only) return Status::Ok();
  // Appends no completed sync covered may have reached one copy only: the
  // new generation's sync makes them durable, so the other copy is
  // rewritten first (the power going while it was written is not damage).
  for (auto& [id, f] : files_) {
    if (f->settled == UINT64_MAX) continue;
    QCFS_RETURN_IF_ERROR(CopyUnsettled(*f));
    f->settled = UINT64_MAX;
  }
  root_synced_ = synced;
  // Start the next journal generation: the replayed tail may end in a torn
  // record, and one copy may be damaged; the new one writes both afresh.
  QCFS_RETURN_IF_ERROR(StartJournal(generation_ + 1));
  copies_.rewritten = true;
  return Status::Ok();
}

// ---------------------------------------------------------------- journal

Status MetaFs::Journal(uint8_t type, const std::string& payload) {
  if (read_only_) return Status::Error(EROFS, "metadata is open read-only");
  std::string r = EncodeRecord(type, generation_, payload, Seed(layout_.uuid));
  if (journal_pos_ + r.size() + kNextReserve > journal_end_) {
    // Chain a new extent (and its mirror); the "continue at" record fills the old one's end.
    QCFS_ASSIGN_OR_RETURN(auto pair, AllocateJournalExtent(kJournalExtent / kBlock, journal_end_));
    const auto [next, mirror] = pair;
    std::string p;
    Encoder e(&p);
    e.Varint(next.offset);
    e.Varint(next.length);
    if (!mirror_.empty()) e.Varint(mirror.offset);
    tail_.append(EncodeRecord(kJournalNext, generation_, p, Seed(layout_.uuid)));
    QCFS_RETURN_IF_ERROR(WriteTail());
    ++journal_records_;
    journal_bytes_ += journal_end_ - journal_pos_;
    journal_.push_back(next);
    if (!mirror_.empty()) mirror_.push_back(mirror);
    journal_pos_ = next.offset;
    journal_end_ = next.offset + next.length;
    tail_offset_ = next.offset;
    tail_.clear();
  }
  tail_.append(r);
  // Rewrites the journal's last block with the new record (4 KiB writes are atomic).
  QCFS_RETURN_IF_ERROR(WriteTail());
  ++journal_records_;
  journal_pos_ += r.size();
  journal_bytes_ += r.size();
  uint64_t keep_from = (journal_pos_ / kBlock) * kBlock;
  if (keep_from > tail_offset_) {
    tail_.erase(0, keep_from - tail_offset_);
    tail_offset_ = keep_from;
  }
  return Status::Ok();
}

Status MetaFs::WriteTail() {
  // The device may reorder the two writes (and lose either at a power cut)
  // until the next sync; replay takes whichever copy of a record verifies.
  std::vector<IoOp> ops{IoOp::Write(tail_offset_, AsBytes(tail_))};
  if (!mirror_.empty()) {
    ops.push_back(IoOp::Write(tail_offset_ - journal_.back().offset + mirror_.back().offset, AsBytes(tail_)));
  }
  return device_->Submit(ops);
}

Result<std::pair<MetaFs::Extent, MetaFs::Extent>> MetaFs::AllocateJournalExtent(uint64_t blocks, uint64_t near) {
  return AllocatePair(blocks, near, mirror_.empty() ? 0 : mirror_.back().offset + mirror_.back().length);
}

Result<std::pair<MetaFs::Extent, MetaFs::Extent>> MetaFs::AllocatePair(uint64_t blocks, uint64_t near,
                                                                      uint64_t mirror_near) {
  QCFS_ASSIGN_OR_RETURN(Extent primary, AllocateBlocks(blocks, near));
  // The mirror in another segment: a segment lost whole leaves one copy.
  const auto segment = static_cast<int64_t>((primary.offset - layout_.data_offset) / layout_.segment_size);
  auto mirror = AllocateBlocks(primary.length / kBlock, mirror_near, segment);
  if (!mirror.ok()) {
    FreeExtent(primary);
    return mirror.status();
  }
  return std::pair{primary, *mirror};
}

Status MetaFs::MaybeCompact() {
  if (compacting_ || journal_bytes_ < kCompactAt) return Status::Ok();
  uint64_t state = use_.size() / 4;
  for (auto& [id, f] : files_) state += 64 + 32 * f->extents.size() + 4 * f->sums.size();
  if (journal_bytes_ < 4 * state) return Status::Ok();
  compacting_ = true;
  Status s = StartJournal(generation_ + 1);
  compacting_ = false;
  return s;
}

// ---------------------------------------------------------------- space

void MetaFs::MarkUsed(const Extent& e) {
  for (uint64_t off = e.offset; off < e.offset + e.length; off += kBlock) {
    uint64_t rel = off - layout_.data_offset;
    auto seg = static_cast<uint32_t>(rel / layout_.segment_size);
    uint64_t block = (rel % layout_.segment_size) / kBlock;
    MetaSegment& m = meta_[seg];
    if (m.bits.empty()) m.bits.assign(layout_.segment_size / kBlock / 64 + 1, 0);
    uint64_t& word = m.bits[block / 64];
    if (!(word & (1ull << (block % 64)))) {
      word |= 1ull << (block % 64);
      ++m.used;
    }
  }
}

void MetaFs::FreeExtent(const Extent& e) { pending_free_.push_back(e); }

Result<uint32_t> MetaFs::TakeFreeSegment() {
  // The lowest free segment: image files stay compact.
  for (uint32_t s = free_hint_; s < use_.size(); ++s) {
    if (use_[s] == SegmentUse::kFree) {
      free_hint_ = s;
      return s;
    }
  }
  for (uint32_t s = 0; s < std::min<size_t>(free_hint_, use_.size()); ++s) {
    if (use_[s] == SegmentUse::kFree) {
      free_hint_ = s;
      return s;
    }
  }
  return Status::Error(ENOSPC, "no free segment left");
}

Result<MetaFs::Extent> MetaFs::AllocateBlocks(uint64_t blocks, uint64_t near, int64_t avoid) {
  const uint64_t per_segment = layout_.segment_size / kBlock;
  blocks = std::min(blocks, per_segment);
  auto try_segment = [&](uint32_t seg, MetaSegment& m, uint64_t start_block) -> std::optional<Extent> {
    uint64_t run = 0;
    for (uint64_t b = start_block; b < per_segment; ++b) {
      bool used = m.bits[b / 64] & (1ull << (b % 64));
      run = used ? 0 : run + 1;
      if (run == blocks) {
        uint64_t first = b + 1 - blocks;
        Extent e{layout_.SegmentOffset(seg) + first * kBlock, blocks * kBlock};
        MarkUsed(e);
        return e;
      }
    }
    return std::nullopt;
  };
  // Right after `near` when possible (files grow contiguously).
  if (near >= layout_.data_offset) {
    uint64_t rel = near - layout_.data_offset;
    auto seg = static_cast<uint32_t>(rel / layout_.segment_size);
    auto it = meta_.find(seg);
    uint64_t b = (rel % layout_.segment_size) / kBlock;
    if (it != meta_.end() && seg != avoid && b < per_segment && !(it->second.bits[b / 64] & (1ull << (b % 64)))) {
      if (auto e = try_segment(seg, it->second, b); e && e->offset == near) return *e;
      if (auto e = try_segment(seg, it->second, b)) {
        // Not adjacent after all: give it back and search normally.
        for (uint64_t off = e->offset; off < e->offset + e->length; off += kBlock) {
          uint64_t bb = (off - layout_.SegmentOffset(seg)) / kBlock;
          it->second.bits[bb / 64] &= ~(1ull << (bb % 64));
          --it->second.used;
        }
      }
    }
  }
  for (auto& [seg, m] : meta_) {
    if (per_segment - m.used < blocks || seg == avoid) continue;
    if (auto e = try_segment(seg, m, 0)) return *e;
  }
  QCFS_ASSIGN_OR_RETURN(uint32_t seg, TakeFreeSegment());
  CountUse(use_[seg], SegmentUse::kMeta);
  use_[seg] = SegmentUse::kMeta;
  MetaSegment& m = meta_[seg];
  m.bits.assign(per_segment / 64 + 1, 0);
  Extent e{layout_.SegmentOffset(seg), blocks * kBlock};
  MarkUsed(e);
  if (generation_ != 0 && !compacting_) {
    std::string p;
    Encoder en(&p);
    en.Fixed32(seg);
    en.U8(static_cast<uint8_t>(SegmentUse::kMeta));
    // The journal may be switching extents right now; replay derives metadata
    // segments from extents anyway, so this record only documents it.
    if (journal_pos_ + p.size() + kRecordOverhead + kNextReserve <= journal_end_) QCFS_RETURN_IF_ERROR(Journal(kSegUse, p));
  }
  return e;
}

void MetaFs::ReleaseEmptyMetaSegments() {
  // Keep one empty metadata segment as slack; give the others back.
  bool kept = false;
  for (auto it = meta_.begin(); it != meta_.end();) {
    if (it->second.used != 0) {
      ++it;
      continue;
    }
    if (!kept) {
      kept = true;
      ++it;
      continue;
    }
    uint32_t seg = it->first;
    it = meta_.erase(it);
    if (discard_) {
      Status d = device_->Discard(layout_.SegmentOffset(seg), layout_.segment_size);
      if (!d.ok()) Log(LogLevel::kWarning, "discard of metadata segment {} failed: {}", seg, d.ToString());
    }
    CountUse(use_[seg], SegmentUse::kFree);
    use_[seg] = SegmentUse::kFree;
    std::string p;
    Encoder e(&p);
    e.Fixed32(seg);
    e.U8(static_cast<uint8_t>(SegmentUse::kFree));
    Journal(kSegUse, p).IgnoreError();  // if lost, replay finds the segment empty and frees it
  }
}

Status MetaFs::SetUse(uint32_t segment, SegmentUse use) {
  CountUse(use_[segment], use);
  use_[segment] = use;
  std::string p;
  Encoder e(&p);
  e.Fixed32(segment);
  e.U8(static_cast<uint8_t>(use));
  return Journal(kSegUse, p);
}

void MetaFs::CountUse(SegmentUse from, SegmentUse to) {
  auto adjust = [&](SegmentUse u, int64_t d) {
    if (u == SegmentUse::kFree) free_segments_ += d;
    else if (u == SegmentUse::kMeta) meta_segments_ += d;
  };
  adjust(from, -1);
  adjust(to, 1);
}

SegmentUse MetaFs::Use(uint32_t segment) const {
  std::lock_guard lock(mu_);
  return segment < use_.size() ? use_[segment] : SegmentUse::kFree;
}

std::vector<SegmentUse> MetaFs::SegmentUses() const {
  std::lock_guard lock(mu_);
  return use_;
}

uint64_t MetaFs::segment_count() const {
  std::lock_guard lock(mu_);
  return use_.size();
}

Result<uint32_t> MetaFs::AcquireDataSegment(uint64_t keep_free) {
  std::lock_guard lock(mu_);
  if (free_segments_ <= static_cast<int64_t>(keep_free)) {
    return Status::Errorf(ENOSPC, "no free segment left ({} kept for metadata)", keep_free);
  }
  QCFS_ASSIGN_OR_RETURN(uint32_t seg, TakeFreeSegment());
  QCFS_RETURN_IF_ERROR(SetUse(seg, SegmentUse::kData));
  QCFS_RETURN_IF_ERROR(MaybeCompact());
  return seg;
}

Status MetaFs::ReleaseDataSegment(uint32_t segment) {
  std::lock_guard lock(mu_);
  if (segment >= use_.size() || use_[segment] != SegmentUse::kData) {
    return Status::Errorf(EINVAL, "segment {} does not hold data", segment);
  }
  QCFS_RETURN_IF_ERROR(SetUse(segment, SegmentUse::kFree));
  return MaybeCompact();
}

Status MetaFs::ClaimDataSegment(uint32_t segment) {
  std::lock_guard lock(mu_);
  if (segment >= use_.size()) return Status::Errorf(EINVAL, "segment {} is beyond the device", segment);
  if (use_[segment] == SegmentUse::kData) return Status::Ok();
  if (use_[segment] == SegmentUse::kMeta) return Status::Errorf(EEXIST, "segment {} holds metadata", segment);
  return SetUse(segment, SegmentUse::kData);
}

Result<uint64_t> MetaFs::TrimFree() {
  uint64_t trimmed = 0;
  // Free segments one at a time, each under the lock: none is taken while
  // it is being discarded, and writers wait for one discard at most.
  const uint64_t count = segment_count();
  for (uint64_t seg = 0; seg < count; ++seg) {
    std::lock_guard lock(mu_);
    if (use_[seg] != SegmentUse::kFree) continue;
    QCFS_RETURN_IF_ERROR(device_->Discard(layout_.SegmentOffset(static_cast<uint32_t>(seg)), layout_.segment_size));
    trimmed += layout_.segment_size;
  }
  // Free block runs in metadata segments (freed blocks become free only
  // after a sync, so nothing recovery needs is among them).
  std::lock_guard lock(mu_);
  const uint64_t per_segment = layout_.segment_size / kBlock;
  for (auto& [seg, m] : meta_) {
    uint64_t run_start = 0;
    for (uint64_t b = 0; b <= per_segment; ++b) {
      bool used = b == per_segment || (m.bits[b / 64] & (1ull << (b % 64)));
      if (!used) continue;
      if (b > run_start) {
        uint64_t len = (b - run_start) * kBlock;
        QCFS_RETURN_IF_ERROR(device_->Discard(layout_.SegmentOffset(seg) + run_start * kBlock, len));
        trimmed += len;
      }
      run_start = b + 1;
    }
  }
  return trimmed;
}

Status MetaFs::Grow(uint64_t segment_count) {
  std::lock_guard lock(mu_);
  if (segment_count < use_.size()) return Status::Error(EINVAL, "a volume cannot shrink");
  free_segments_ += static_cast<int64_t>(segment_count - use_.size());
  use_.resize(segment_count, SegmentUse::kFree);
  layout_.segment_count = segment_count;
  return Status::Ok();
}

MetaFsUsage MetaFs::Usage() const {
  std::lock_guard lock(mu_);
  MetaFsUsage u;
  u.meta_segments = static_cast<uint64_t>(meta_segments_);
  u.free_segments = static_cast<uint64_t>(free_segments_);
  u.data_segments = use_.size() - u.meta_segments - u.free_segments;
  for (auto& [id, f] : files_) {
    if (f->deleted) continue;
    u.file_bytes += f->size;
    ++u.files;
  }
  u.journal_bytes = journal_bytes_;
  return u;
}

// ---------------------------------------------------------------- files

Result<std::shared_ptr<MetaFs::File>> MetaFs::Create(const std::string& name) {
  std::lock_guard lock(mu_);
  auto existing = names_.find(name);
  if (existing != names_.end()) {
    std::string p;
    Encoder(&p).Varint(existing->second);
    QCFS_RETURN_IF_ERROR(Journal(kFileDelete, p));
    DropFile(existing->second);
  }
  auto f = std::make_shared<FileState>();
  f->id = next_id_++;
  f->name = name;
  f->tail_loaded = true;  // empty
  std::string p;
  Encoder(&p).Varint(f->id);
  Encoder(&p).String(name);
  QCFS_RETURN_IF_ERROR(Journal(kFileCreate, p));
  files_[f->id] = f;
  names_[name] = f->id;
  f->handles += 1;
  return std::shared_ptr<File>(new File(this, f));
}

Result<std::shared_ptr<MetaFs::File>> MetaFs::Open(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = names_.find(name);
  if (it == names_.end()) return Status::Errorf(ENOENT, "metadata file {} not found", name);
  auto f = files_.at(it->second);
  f->handles += 1;
  return std::shared_ptr<File>(new File(this, f));
}

bool MetaFs::Exists(const std::string& name) const {
  std::lock_guard lock(mu_);
  return names_.count(name) != 0;
}

Result<uint64_t> MetaFs::FileSize(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = names_.find(name);
  if (it == names_.end()) return Status::Errorf(ENOENT, "metadata file {} not found", name);
  return files_.at(it->second)->size;
}

std::vector<std::string> MetaFs::List(const std::string& prefix) const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (auto it = names_.lower_bound(prefix); it != names_.end() && it->first.starts_with(prefix); ++it) {
    out.push_back(it->first);
  }
  return out;
}

void MetaFs::DropFile(uint64_t id) {
  auto it = files_.find(id);
  if (it == files_.end()) return;
  auto f = it->second;
  names_.erase(f->name);
  files_.erase(it);
  f->deleted = true;
  if (f->handles == 0) {
    for (size_t i = 0; i < f->extents.size(); ++i) {
      FreeExtent(f->extents[i]);
      if (f->mirrors[i] != 0) FreeExtent({f->mirrors[i], f->extents[i].length});
    }
    f->extents.clear();
    f->mirrors.clear();
  }
}

Status MetaFs::Delete(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = names_.find(name);
  if (it == names_.end()) return Status::Errorf(ENOENT, "metadata file {} not found", name);
  std::string p;
  Encoder(&p).Varint(it->second);
  QCFS_RETURN_IF_ERROR(Journal(kFileDelete, p));
  DropFile(it->second);
  return MaybeCompact();
}

Status MetaFs::Rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  auto it = names_.find(from);
  if (it == names_.end()) return Status::Errorf(ENOENT, "metadata file {} not found", from);
  if (from == to) return Status::Ok();
  uint64_t id = it->second;
  std::string p;
  Encoder(&p).Varint(id);
  Encoder(&p).String(to);
  QCFS_RETURN_IF_ERROR(Journal(kFileRename, p));
  auto other = names_.find(to);
  if (other != names_.end()) DropFile(other->second);
  auto f = files_.at(id);
  names_.erase(from);
  f->name = to;
  names_[to] = id;
  return Status::Ok();
}

Status MetaFs::Truncate(const std::string& name, uint64_t size) {
  std::shared_ptr<FileState> f;
  {
    std::lock_guard lock(mu_);
    auto it = names_.find(name);
    if (it == names_.end()) return Status::Errorf(ENOENT, "metadata file {} not found", name);
    f = files_.at(it->second);
    if (size > f->size) return Status::Error(EINVAL, "metadata files only shrink");
  }
  // The block the new end falls in gets the checksum of what stays of it.
  std::string tail(size % kBlock, '\0');
  if (!tail.empty()) QCFS_RETURN_IF_ERROR(ReadFile(f, size - tail.size(), Bytes(tail)));
  std::lock_guard lock(mu_);
  if (f->deleted) return Status::Errorf(ENOENT, "metadata file {} not found", name);
  f->size = size;
  f->journaled_size = size;
  XXH3_64bits_reset(f->appended);
  f->sums.resize(RoundUp(size, kBlock) / kBlock, 0);
  if (!tail.empty()) {
    f->sums.back() = BlockSum(tail.data(), tail.size());
    QCFS_RETURN_IF_ERROR(JournalSums(*f, size / kBlock, 1));
  }
  f->tail = std::move(tail);
  f->tail_loaded = true;
  std::string p;
  Encoder(&p).Varint(f->id);
  Encoder(&p).Varint(size);
  return Journal(kFileSize, p);
}

Status MetaFs::Sync() {
  if (read_only_) return Status::Ok();
  std::vector<Extent> freed;
  uint64_t generation, covered;
  {
    std::lock_guard lock(mu_);
    freed.swap(pending_free_);
    generation = generation_;
    covered = journal_records_;  // records written before the sync begins
  }
  Status synced = device_->Sync();
  std::lock_guard lock(mu_);
  if (!synced.ok()) {
    pending_free_.insert(pending_free_.end(), freed.begin(), freed.end());
    return synced;
  }
  // Tell replay, through the next root, that those records are on the
  // device (the root becomes durable with a later sync; until then replay
  // checks the appended bytes, and cannot tell damage from a crash there).
  if (generation == generation_ && covered > root_synced_) {
    const uint64_t mirror = mirror_.empty() ? 0 : mirror_.front().offset;
    QCFS_RETURN_IF_ERROR(WriteRoot(generation_, journal_.front(), mirror, covered));
    root_synced_ = covered;
  }
  // Freed blocks are reusable now that their freeing is durable.
  const uint64_t per_segment = layout_.segment_size / kBlock;
  for (const Extent& e : freed) {
    for (uint64_t off = e.offset; off < e.offset + e.length; off += kBlock) {
      uint64_t rel = off - layout_.data_offset;
      auto seg = static_cast<uint32_t>(rel / layout_.segment_size);
      uint64_t b = (rel % layout_.segment_size) / kBlock;
      auto it = meta_.find(seg);
      if (it == meta_.end() || b >= per_segment) continue;
      uint64_t& word = it->second.bits[b / 64];
      if (word & (1ull << (b % 64))) {
        word &= ~(1ull << (b % 64));
        --it->second.used;
      }
    }
  }
  ReleaseEmptyMetaSegments();
  return Status::Ok();
}

std::map<std::string, std::vector<MetaFs::Extent>> MetaFs::FileExtents() const {
  std::lock_guard lock(mu_);
  std::map<std::string, std::vector<Extent>> out;
  for (auto& [id, f] : files_) out[f->name] = f->extents;
  return out;
}

std::map<std::string, std::vector<MetaFs::Extent>> MetaFs::FileMirrorExtents() const {
  std::lock_guard lock(mu_);
  std::map<std::string, std::vector<Extent>> out;
  for (auto& [id, f] : files_) {
    auto& v = out[f->name];
    for (size_t i = 0; i < f->extents.size(); ++i) {
      v.push_back({f->mirrors[i], f->mirrors[i] == 0 ? 0 : f->extents[i].length});
    }
  }
  return out;
}

std::vector<MetaFs::Extent> MetaFs::JournalExtents() const {
  std::lock_guard lock(mu_);
  return journal_;
}

std::vector<MetaFs::Extent> MetaFs::JournalMirrorExtents() const {
  std::lock_guard lock(mu_);
  return mirror_;
}

// ---------------------------------------------------------------- File

MetaFs::File::~File() {
  std::lock_guard lock(fs_->mu_);
  state_->handles -= 1;
  if (state_->handles == 0 && state_->deleted) {
    for (size_t i = 0; i < state_->extents.size(); ++i) {
      fs_->FreeExtent(state_->extents[i]);
      if (state_->mirrors[i] != 0) fs_->FreeExtent({state_->mirrors[i], state_->extents[i].length});
    }
    state_->extents.clear();
    state_->mirrors.clear();
  }
}

uint64_t MetaFs::File::size() const {
  std::lock_guard lock(mu_);
  std::lock_guard fs_lock(fs_->mu_);
  return state_->size + buffer_.size();
}

Status MetaFs::File::Append(std::span<const std::byte> data) {
  std::lock_guard lock(mu_);
  buffer_.append(reinterpret_cast<const char*>(data.data()), data.size());
  if (buffer_.size() >= (256u << 10)) return WriteOut();
  return Status::Ok();
}

Status MetaFs::File::WriteOut() {
  // REQUIRES: mu_ held.
  bool need_tail;
  uint64_t start;
  {
    std::lock_guard fs_lock(fs_->mu_);
    if (state_->deleted) {
      buffer_.clear();
      return Status::Ok();
    }
    start = state_->size;
    need_tail = start % kBlock != 0 && !state_->tail_loaded;
  }
  if (need_tail) {
    // The append extends a block whose checksum covers the bytes before it.
    std::string tail(start % kBlock, '\0');
    QCFS_RETURN_IF_ERROR(fs_->ReadFile(state_, start - tail.size(), Bytes(tail)));
    std::lock_guard fs_lock(fs_->mu_);
    state_->tail = std::move(tail);
    state_->tail_loaded = true;
  }
  std::vector<IoOp> ops;
  std::string head;  // the file's bytes before `start` in its block
  {
    std::lock_guard fs_lock(fs_->mu_);
    if (state_->deleted) {
      buffer_.clear();
      return Status::Ok();
    }
    head = state_->tail;
    const uint64_t end = start + buffer_.size();
    // Grow the file's space: contiguous when possible, in steps that grow
    // with it; each extent with a mirror in another segment.
    while (state_->allocated < end) {
      uint64_t need = end - state_->allocated;
      uint64_t step = std::max<uint64_t>({need, state_->allocated / 4, 64 << 10});
      const bool any = !state_->extents.empty();
      const uint64_t near = any ? state_->extents.back().offset + state_->extents.back().length : 0;
      const uint64_t mirror_near =
          any && state_->mirrors.back() != 0 ? state_->mirrors.back() + state_->extents.back().length : 0;
      QCFS_ASSIGN_OR_RETURN(auto pair, fs_->AllocatePair(RoundUp(step, kBlock) / kBlock, near, mirror_near));
      const auto [e, m] = pair;
      if (any && near == e.offset && mirror_near == m.offset) {
        state_->extents.back().length += e.length;
      } else {
        state_->extents.push_back(e);
        state_->mirrors.push_back(m.offset);
      }
      state_->allocated += e.length;
      std::string p;
      Encoder en(&p);
      en.Varint(state_->id);
      en.Varint(e.offset);
      en.Varint(e.length);
      en.Varint(m.offset);
      QCFS_RETURN_IF_ERROR(fs_->Journal(kFileExtent, p));
    }
    // Map [start, end) onto the extents, both copies (an extent from before
    // mirroring has one).
    const auto* data = reinterpret_cast<const std::byte*>(buffer_.data());
    for (bool mirror : {false, true}) {
      MapExtents(state_->extents, state_->mirrors, mirror, start, buffer_.size(),
                 [&](uint64_t dev, uint64_t at, uint64_t len) {
                   ops.push_back(IoOp::Write(dev, std::span<const std::byte>(data + at, len)));
                 });
    }
  }
  QCFS_RETURN_IF_ERROR(fs_->device_->Submit(ops));
  // The checksums of the blocks the append touched.
  std::vector<uint32_t> sums;
  size_t pos = 0;
  if (!head.empty()) {
    std::string block = head;
    pos = std::min<size_t>(kBlock - head.size(), buffer_.size());
    block.append(buffer_, 0, pos);
    sums.push_back(BlockSum(block.data(), block.size()));
  }
  for (; pos < buffer_.size(); pos += kBlock) {
    sums.push_back(BlockSum(buffer_.data() + pos, std::min<size_t>(kBlock, buffer_.size() - pos)));
  }
  const uint64_t end = start + buffer_.size();
  const size_t in_last = end % kBlock;
  std::string tail = buffer_.size() >= in_last ? buffer_.substr(buffer_.size() - in_last) : head + buffer_;
  std::lock_guard fs_lock(fs_->mu_);
  state_->sums.resize(start / kBlock);
  state_->sums.insert(state_->sums.end(), sums.begin(), sums.end());
  state_->tail = std::move(tail);
  state_->tail_loaded = true;
  state_->size = end;
  XXH3_64bits_update(state_->appended, buffer_.data(), buffer_.size());
  buffer_.clear();
  return Status::Ok();
}

Status MetaFs::File::Flush() {
  std::lock_guard lock(mu_);
  if (!buffer_.empty()) QCFS_RETURN_IF_ERROR(WriteOut());
  return Status::Ok();
}

Status MetaFs::File::Sync() {
  {
    std::lock_guard lock(mu_);
    if (!buffer_.empty()) QCFS_RETURN_IF_ERROR(WriteOut());
    std::lock_guard fs_lock(fs_->mu_);
    if (!state_->deleted && state_->journaled_size != state_->size) {
      // The new size goes into the journal with the same sync as the bytes.
      std::string p;
      Encoder e(&p);
      e.Varint(state_->id);
      e.Varint(state_->size);
      if (state_->size > state_->journaled_size) {
        e.Fixed64(XXH3_64bits_digest(state_->appended));
        // The checksums of the blocks it adds (or extends) first: replay
        // reads them before the size that makes those blocks part of the file.
        const uint64_t first = state_->journaled_size / kBlock;
        QCFS_RETURN_IF_ERROR(fs_->JournalSums(*state_, first, RoundUp(state_->size, kBlock) / kBlock - first));
      }
      QCFS_RETURN_IF_ERROR(fs_->Journal(kFileSize, p));
      state_->journaled_size = state_->size;
      XXH3_64bits_reset(state_->appended);
      QCFS_RETURN_IF_ERROR(fs_->MaybeCompact());
    }
  }
  return fs_->Sync();
}

Result<size_t> MetaFs::File::Read(uint64_t offset, std::span<std::byte> out) const {
  FileView view;
  size_t total;
  {
    std::lock_guard fs_lock(fs_->mu_);
    if (offset >= state_->size) return size_t{0};
    total = static_cast<size_t>(std::min<uint64_t>(out.size(), state_->size - offset));
    view = fs_->ViewOf(*state_, offset, total);
  }
  QCFS_RETURN_IF_ERROR(fs_->ReadView(view, offset, out.first(total)));
  return total;
}

// ---------------------------------------------------------------- copies

Status MetaFs::JournalSums(const FileState& f, uint64_t first, uint64_t count) {
  for (const std::string& p : SumsPayloads(f.id, f.sums, first, count)) QCFS_RETURN_IF_ERROR(Journal(kFileSums, p));
  return Status::Ok();
}

MetaFs::FileView MetaFs::ViewOf(const FileState& f, uint64_t offset, uint64_t length) const {
  FileView v;
  v.name = f.name;
  v.size = f.size;
  v.settled = f.settled;
  v.extents = f.extents;
  v.mirrors = f.mirrors;
  v.first_block = offset / kBlock;
  const uint64_t end_block = std::min<uint64_t>(RoundUp(offset + length, kBlock) / kBlock, f.sums.size());
  if (v.first_block < end_block) v.sums.assign(f.sums.begin() + v.first_block, f.sums.begin() + end_block);
  return v;
}

Status MetaFs::ReadFile(const std::shared_ptr<FileState>& f, uint64_t offset, std::span<std::byte> out) const {
  FileView view;
  {
    std::lock_guard lock(mu_);
    if (offset + out.size() > f->size) return Status::Errorf(EIO, "metadata file {} is shorter than the read", f->name);
    view = ViewOf(*f, offset, out.size());
  }
  return ReadView(view, offset, out);
}

Status MetaFs::ReadView(const FileView& v, uint64_t offset, std::span<std::byte> out) const {
  // REQUIRES: offset + out.size() <= v.size.
  if (out.empty()) return Status::Ok();
  auto sum_of = [&](uint64_t block) -> uint32_t {
    return block >= v.first_block && block - v.first_block < v.sums.size() ? v.sums[block - v.first_block] : 0;
  };
  const bool verify = std::any_of(v.sums.begin(), v.sums.end(), [](uint32_t s) { return s != 0; });
  std::vector<IoOp> ops;
  if (!verify) {
    // No checksum to check (written before mirroring): read the one copy.
    const uint64_t mapped = MapExtents(v.extents, v.mirrors, false, offset, out.size(),
                                       [&](uint64_t dev, uint64_t at, uint64_t len) {
                                         ops.push_back(IoOp::Read(dev, out.subspan(at, len)));
                                       });
    if (mapped < out.size()) return Status::Errorf(EIO, "metadata file {} is shorter than its size", v.name);
    return device_->Submit(ops);
  }
  // Whole blocks (up to the file's end), each checked against its checksum.
  const uint64_t from = offset / kBlock * kBlock;
  const uint64_t to = std::min(RoundUp(offset + out.size(), kBlock), v.size);
  std::string buf(to - from, '\0');
  auto read_into = [&](bool mirror, uint64_t at, uint64_t n) -> Status {
    std::vector<IoOp> reads;
    const uint64_t mapped = MapExtents(v.extents, v.mirrors, mirror, at, n, [&](uint64_t dev, uint64_t o, uint64_t len) {
      reads.push_back(IoOp::Read(dev, Bytes(buf).subspan(at - from + o, len)));
    });
    if (mapped < n) return Status::Errorf(EIO, "metadata file {} is shorter than its size", v.name);
    return device_->Submit(reads);
  };
  const Status whole = read_into(false, from, to - from);
  for (uint64_t at = from; at < to; at += kBlock) {
    const uint64_t n = std::min(kBlock, to - at);
    const uint32_t sum = sum_of(at / kBlock);
    auto good = [&] { return sum == 0 || BlockSum(buf.data() + (at - from), n) == sum; };
    if (whole.ok() && good()) continue;
    if (!whole.ok() && read_into(false, at, n).ok() && good()) continue;
    if (read_into(true, at, n).ok() && good()) {
      mirror_reads_.fetch_add(1);
      Log(LogLevel::kWarning, "metadata file {}: block {} read from its mirror copy (the primary copy is damaged)",
          v.name, at / kBlock);
      continue;
    }
    unreadable_reads_.fetch_add(1);
    return Status::Errorf(EIO, "metadata file {}: block {} is damaged in both its copies", v.name, at / kBlock);
  }
  std::memcpy(out.data(), buf.data() + (offset - from), out.size());
  return Status::Ok();
}

Status MetaFs::CopyUnsettled(const FileState& f) {
  const FileView v = ViewOf(f, 0, f.size);
  std::vector<IoOp> writes;
  std::vector<std::string> keep;  // the bytes the writes point at
  keep.reserve(RoundUp(f.size, kBlock) / kBlock);
  for (uint64_t at = f.settled / kBlock * kBlock; at < f.size; at += kBlock) {
    const uint64_t n = std::min(kBlock, f.size - at);
    const uint32_t sum = at / kBlock < v.sums.size() ? v.sums[at / kBlock] : 0;
    if (sum == 0) continue;
    std::string copy[2];
    bool good[2];
    for (int c = 0; c < 2; ++c) {
      copy[c].assign(n, '\0');
      std::vector<IoOp> reads;
      const bool mapped = MapExtents(v.extents, v.mirrors, c == 1, at, n, [&](uint64_t dev, uint64_t o, uint64_t l) {
        reads.push_back(IoOp::Read(dev, Bytes(copy[c]).subspan(o, l)));
      }) == n;
      good[c] = mapped && device_->Submit(reads).ok() && BlockSum(copy[c].data(), n) == sum;
      if (!mapped) good[c] = true;  // no mirror: nothing to copy to
    }
    if (good[0] == good[1]) continue;
    const int bad = good[0] ? 1 : 0;
    keep.push_back(std::move(copy[1 - bad]));
    const auto* src = reinterpret_cast<const std::byte*>(keep.back().data());
    MapExtents(v.extents, v.mirrors, bad == 1, at, n, [&](uint64_t dev, uint64_t o, uint64_t l) {
      writes.push_back(IoOp::Write(dev, std::span<const std::byte>(src + o, l)));
    });
  }
  return device_->Submit(writes);
}

Result<MetaFs::FileCopies> MetaFs::ScrubFiles(bool repair) {
  repair = repair && !read_only_;
  FileCopies found;
  std::vector<std::shared_ptr<FileState>> files;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, f] : files_) {
      if (f->deleted) continue;
      f->handles += 1;  // its blocks stay its own while they are read (and rewritten)
      files.push_back(f);
    }
  }
  constexpr uint64_t kStep = 1ull << 20;
  Status status = Status::Ok();
  for (const auto& f : files) {
    FileView v;
    {
      std::lock_guard lock(mu_);
      v = ViewOf(*f, 0, f->size);
    }
    for (uint64_t from = 0; from < v.size && status.ok(); from += kStep) {
      const uint64_t n = std::min(kStep, v.size - from);
      // Both copies of the step; a block that cannot be read is left zero.
      std::string copy[2];
      std::vector<bool> one_copy((n + kBlock - 1) / kBlock, false);  // no mirror (written before mirroring)
      for (int c = 0; c < 2; ++c) {
        copy[c].assign(n, '\0');
        for (uint64_t at = 0; at < n; at += kBlock) {
          const uint64_t len = std::min(kBlock, n - at);
          std::vector<IoOp> reads;
          if (MapExtents(v.extents, v.mirrors, c == 1, from + at, len, [&](uint64_t dev, uint64_t o, uint64_t l) {
                reads.push_back(IoOp::Read(dev, Bytes(copy[c]).subspan(at + o, l)));
              }) < len) {
            one_copy[at / kBlock] = true;
            continue;
          }
          if (!device_->Submit(reads).ok()) std::fill(copy[c].begin() + at, copy[c].begin() + at + len, '\0');
        }
      }
      for (uint64_t at = 0; at < n; at += kBlock) {
        const uint64_t len = std::min(kBlock, n - at);
        const uint64_t block = (from + at) / kBlock;
        if (one_copy[at / kBlock]) continue;
        const uint32_t sum = block < v.sums.size() ? v.sums[block] : 0;
        if (sum == 0) continue;
        // Past the last sync one copy may lack an append: the end, not damage.
        if (v.settled != UINT64_MAX && block >= v.settled / kBlock) continue;
        const bool good[2] = {BlockSum(copy[0].data() + at, len) == sum, BlockSum(copy[1].data() + at, len) == sum};
        if (good[0] && good[1]) continue;
        if (!good[0] && !good[1]) {
          ++found.both_damaged;
          Log(LogLevel::kError, "metadata file {}: block {} is damaged in both its copies", v.name, block);
          continue;
        }
        const int bad = good[0] ? 1 : 0;
        ++(bad == 0 ? found.primary_damaged : found.mirror_damaged);
        if (!repair) continue;
        std::vector<IoOp> writes;
        const auto* src = reinterpret_cast<const std::byte*>(copy[1 - bad].data() + at);
        MapExtents(v.extents, v.mirrors, bad == 1, from + at, len, [&](uint64_t dev, uint64_t o, uint64_t l) {
          writes.push_back(IoOp::Write(dev, std::span<const std::byte>(src + o, l)));
        });
        status = device_->Submit(writes);
        if (!status.ok()) break;
        ++found.repaired;
      }
    }
    if (!status.ok()) break;
  }
  {
    std::lock_guard lock(mu_);
    for (const auto& f : files) {
      f->handles -= 1;
      if (f->handles == 0 && f->deleted) {
        for (size_t i = 0; i < f->extents.size(); ++i) {
          FreeExtent(f->extents[i]);
          if (f->mirrors[i] != 0) FreeExtent({f->mirrors[i], f->extents[i].length});
        }
        f->extents.clear();
        f->mirrors.clear();
      }
    }
  }
  QCFS_RETURN_IF_ERROR(status);
  if (found.repaired > 0) QCFS_RETURN_IF_ERROR(device_->Sync());
  return found;
}

}  // namespace qcfs
