#include "qcfs/store/chunk_store.h"

#include "qcfs/core/uninit_bytes.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <map>

#include "qcfs/core/log.h"
#include "qcfs/core/units.h"
#include "qcfs/store/internal/record.h"

namespace qcfs {

using internal::kRecordHeaderSize;
using internal::kSegmentHeaderSize;
using schema::ChunkIndexRecord;

namespace {

uint64_t RoundUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
rocksdb::Slice Sl(const std::string& s) { return rocksdb::Slice(s); }

internal::RecordMember MemberOf(const Fingerprint& fp, uint32_t raw_len) {
  internal::RecordMember m;
  std::memcpy(m.fp_prefix, fp.bytes.data(), internal::kFpPrefix);
  m.raw_len = raw_len;
  return m;
}

}  // namespace

size_t TrimmedLength(std::span<const std::byte> data) {
  size_t n = data.size();
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p + n - 8, 8);
    if (w != 0) break;
    n -= 8;
  }
  while (n > 0 && p[n - 1] == 0) --n;
  return n;
}

EncodedRecord EncodeChunk(const ChunkContent& chunk, const CompressionSpec& spec, bool borrow_raw) {
  EncodedRecord r;
  std::vector<std::byte> payload;
  r.codec = CompressOrKeep(spec, chunk.content, &payload);
  const auto raw = static_cast<uint32_t>(chunk.content.size());
  internal::RecordMember m = MemberOf(chunk.fp, raw);
  if (r.codec == Codec::kNone && borrow_raw) {
    r.bytes = internal::BuildRawPrefix(chunk.content, m);
    r.borrowed_payload = chunk.content;
  } else {
    r.bytes = internal::BuildRecord(r.codec, false, r.codec == Codec::kNone ? chunk.content : payload, raw, {&m, 1});
  }
  r.members.push_back({chunk.fp, raw, 0, static_cast<uint32_t>(r.size())});
  return r;
}

EncodedRecord EncodePack(std::span<const ChunkContent> chunks, const CompressionSpec& spec) {
  EncodedRecord r;
  std::vector<std::byte> raw;
  std::vector<internal::RecordMember> table;
  for (const ChunkContent& c : chunks) {
    r.members.push_back({c.fp, static_cast<uint32_t>(c.content.size()), static_cast<uint32_t>(raw.size()), 0});
    table.push_back(MemberOf(c.fp, static_cast<uint32_t>(c.content.size())));
    raw.insert(raw.end(), c.content.begin(), c.content.end());
  }
  std::vector<std::byte> payload;
  r.codec = CompressOrKeep(spec, raw, &payload);
  r.pack_raw = static_cast<uint32_t>(raw.size());
  r.bytes = internal::BuildRecord(r.codec, true, r.codec == Codec::kNone ? raw : payload, r.pack_raw, table);
  // Each member is charged its part of the record, in proportion to its content.
  const uint64_t total = r.bytes.size();
  uint64_t charged = 0;
  for (auto& m : r.members) {
    m.share = static_cast<uint32_t>(total * m.raw_len / r.pack_raw);
    charged += m.share;
  }
  r.members[0].share += static_cast<uint32_t>(total - charged);
  return r;
}

// ---------------------------------------------------------------- ChunkStore

ChunkStore::ChunkStore(Device* device, MetaDb* db, MetaFs* space, const Superblock& sb, const StoreOptions& options)
    : device_(device), db_(db), space_(space), sb_(sb), segment_count_(sb.segment_count), options_(options) {}

ChunkStore::~ChunkStore() = default;

Result<std::unique_ptr<ChunkStore>> ChunkStore::Open(Device* device, MetaDb* db, MetaFs* space, const Superblock& sb,
                                                     const StoreOptions& options) {
  std::unique_ptr<ChunkStore> store(new ChunkStore(device, db, space, sb, options));
  QCFS_RETURN_IF_ERROR(store->Load());
  return store;
}

Status ChunkStore::Load() {
  live_.assign(sb_.segment_count, 0);
  seg_state_.assign(sb_.segment_count, kFree);
  auto it = db_->Iterate(std::string(1, schema::kSegmentPrefix));
  for (it->Seek(); it->Valid(); it->Next()) {
    uint32_t seg;
    schema::SegmentRecord rec;
    if (!schema::ParseU32Suffix(it->key_suffix(), &seg) || !schema::SegmentRecord::Decode(it->value(), &rec)) {
      return Status::Error(EUCLEAN, "malformed segment usage record in metadata; run qcfs check --repair");
    }
    if (seg >= sb_.segment_count || rec.live_bytes > sb_.segment_size) {
      return Status::Errorf(EUCLEAN, "segment usage record for segment {} is out of range; run qcfs check --repair", seg);
    }
    live_[seg] = static_cast<uint32_t>(rec.live_bytes);
    if (rec.live_bytes == 0) continue;
    SegmentUse use = space_->Use(seg);
    if (use == SegmentUse::kFree && !db_->read_only()) {
      // Its ownership record was lost: claim it back before anything else
      // can take it.
      Log(LogLevel::kWarning, "segment {} holds live chunks but was recorded free; recorded as data again", seg);
      QCFS_RETURN_IF_ERROR(space_->ClaimDataSegment(seg));
    } else if (use != SegmentUse::kData && !options_.tolerate_damage) {
      return Status::Errorf(EUCLEAN, "segment {} holds live chunks but is recorded as {}; run qcfs check", seg,
                            use == SegmentUse::kMeta ? "metadata" : "free");
    }
  }
  QCFS_RETURN_IF_ERROR(it->status());
  // Data segments with nothing live (written before a crash, never
  // referenced) go back: nothing durable points into them.
  for (uint32_t seg = 0; seg < sb_.segment_count; ++seg) {
    if (live_[seg] > 0) {
      seg_state_[seg] = kInUse;
      continue;
    }
    if (space_->Use(seg) == SegmentUse::kData && !db_->read_only()) {
      QCFS_RETURN_IF_ERROR(space_->ReleaseDataSegment(seg));
    }
  }
  QCFS_ASSIGN_OR_RETURN(auto stats, db_->Get(schema::SystemKey(schema::kStatsName)));
  if (stats.has_value() && !schema::StoreStats::Decode(*stats, &stats_)) {
    return Status::Error(EUCLEAN, "malformed store statistics in metadata; run qcfs check --repair");
  }
  return Status::Ok();
}

std::unique_ptr<ChunkStore::Txn> ChunkStore::Begin() { return std::unique_ptr<Txn>(new Txn(this)); }

uint64_t ChunkStore::ReservationFor(uint64_t raw) const {
  return raw + kRecordHeaderSize + internal::BlockTableLength(raw);  // a raw record's block table is the most
}

uint64_t ChunkStore::MetaReserve() const {
  return std::max<uint64_t>(2, space_->Usage().meta_segments / 4 + 1);
}

uint64_t ChunkStore::AvailableLocked() const {
  uint64_t capacity = sb_.DataCapacity();
  MetaFsUsage m = space_->Usage();
  uint64_t held = stats_.stored_bytes + reserved_ +
                  (uint64_t{options_.reserve_segments} + m.meta_segments + MetaReserve()) * sb_.segment_size;
  return held >= capacity ? 0 : capacity - held;
}

uint64_t ChunkStore::ImmediateLocked() const {
  uint64_t free = space_->Usage().free_segments;
  uint64_t reserve = MetaReserve();
  uint64_t room = (free > reserve ? free - reserve : 0) * sb_.segment_size;
  if (open_segment_ >= 0) room += sb_.segment_size - open_offset_;
  return room;
}

Status ChunkStore::Reserve(uint64_t bytes) {
  std::lock_guard lock(state_mu_);
  if (bytes > AvailableLocked()) {
    return Status::Errorf(ENOSPC, "no space left on volume: {} free of {}", FormatSize(AvailableLocked()),
                          FormatSize(sb_.DataCapacity()));
  }
  reserved_ += bytes;
  return Status::Ok();
}

void ChunkStore::Unreserve(uint64_t bytes) {
  std::lock_guard lock(state_mu_);
  reserved_ -= std::min(reserved_, bytes);
}

StoreUsage ChunkStore::Usage() const {
  std::lock_guard lock(state_mu_);
  StoreUsage u;
  u.stats = stats_;
  u.segment_size = sb_.segment_size;
  u.segment_count = sb_.segment_count;
  u.free_segments = space_->Usage().free_segments;
  u.pending_segments = pending_.size();
  u.capacity_bytes = sb_.DataCapacity();
  u.live_bytes = stats_.stored_bytes;
  u.reserved_bytes = reserved_;
  u.available_bytes = AvailableLocked();
  return u;
}

void ChunkStore::FreeSegmentLocked(uint32_t segment) {
  if (seg_state_[segment] != kInUse || live_[segment] != 0 || segment == open_segment_) return;
  if (pinned_.count(segment) != 0) return;
  seg_state_[segment] = kPending;
  pending_.push_back(segment);
}

Status ChunkStore::SyncFreed() {
  std::vector<uint32_t> batch;
  {
    std::lock_guard lock(state_mu_);
    batch.swap(pending_);
  }
  if (batch.empty()) return Status::Ok();
  Status s = db_->SyncWal();
  if (s.ok() && options_.discard) {
    for (uint32_t seg : batch) {
      Status d = device_->Discard(sb_.SegmentOffset(seg), sb_.segment_size);
      if (!d.ok()) Log(LogLevel::kWarning, "discard of segment {} failed: {}", seg, d.ToString());
    }
  }
  std::lock_guard lock(state_mu_);
  if (!s.ok()) {
    pending_.insert(pending_.end(), batch.begin(), batch.end());
    return s;
  }
  Status released;
  for (uint32_t seg : batch) {
    if (seg_state_[seg] != kPending) continue;
    if (live_[seg] == 0) {
      seg_state_[seg] = kFree;
      Status r = space_->ReleaseDataSegment(seg);
      if (released.ok()) released = r;
    } else {
      seg_state_[seg] = kInUse;
    }
  }
  return released;
}

Status ChunkStore::OpenSegment(std::vector<Staged>* staged) {
  Result<uint32_t> seg = Status::Error(ENOSPC, "");
  for (int attempt = 0; attempt < 2; ++attempt) {
    seg = space_->AcquireDataSegment(MetaReserve());
    if (seg.ok() || seg.status().code() != ENOSPC) break;
    // Nothing free: make what earlier batches freed reusable.
    if (attempt == 0) QCFS_RETURN_IF_ERROR(SyncFreed());
  }
  if (!seg.ok()) {
    if (seg.status().code() != ENOSPC) return seg.status();
    return Status::Errorf(ENOSPC, "no free segment left on the volume ({} segments of {})", segment_count_.load(),
                          FormatSize(sb_.segment_size));
  }
  std::lock_guard lock(state_mu_);
  seg_state_[*seg] = kInUse;
  live_[*seg] = 0;
  open_segment_ = *seg;
  open_offset_ = kSegmentHeaderSize;
  Staged st{*seg, 0, std::vector<std::byte>(kSegmentHeaderSize), {}};
  st.bytes.reserve(sb_.segment_size / 4);
  internal::SegmentHeader h;
  h.segment = *seg;
  h.sequence = static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  std::memcpy(h.uuid, sb_.uuid.data(), 16);
  internal::EncodeSegmentHeader(h, st.bytes.data());
  staged->push_back(std::move(st));
  return Status::Ok();
}

Result<ChunkStore::Location> ChunkStore::Allocate(uint32_t record_len, std::vector<Staged>* staged,
                                                  std::vector<uint32_t>* closed) {
  bool need_new;
  {
    std::lock_guard lock(state_mu_);
    need_new = open_segment_ < 0 || uint64_t{open_offset_} + record_len > sb_.segment_size;
    if (need_new && open_segment_ >= 0) {
      closed->push_back(static_cast<uint32_t>(open_segment_));
      open_segment_ = -1;
    }
  }
  if (need_new) QCFS_RETURN_IF_ERROR(OpenSegment(staged));
  std::lock_guard lock(state_mu_);
  Location loc{static_cast<uint32_t>(open_segment_), open_offset_};
  open_offset_ += record_len;
  return loc;
}

Status ChunkStore::StageRecord(std::span<const std::byte> head, std::span<const std::byte> tail,
                               std::vector<Staged>* staged, std::vector<uint32_t>* closed, Location* loc, bool borrow) {
  const size_t size = head.size() + tail.size();
  if (size + kSegmentHeaderSize > sb_.segment_size) {
    return Status::Errorf(EINVAL, "record of {} bytes does not fit a segment", size);
  }
  QCFS_ASSIGN_OR_RETURN(*loc, Allocate(static_cast<uint32_t>(size), staged, closed));
  if (borrow) {
    uint32_t at = loc->offset;
    for (auto part : {head, tail}) {
      if (part.empty()) continue;
      staged->push_back(Staged{loc->segment, at, {}, part});
      at += static_cast<uint32_t>(part.size());
    }
    return Status::Ok();
  }
  if (staged->empty() || !staged->back().borrowed.empty() || staged->back().segment != loc->segment ||
      staged->back().start + staged->back().bytes.size() != loc->offset) {
    staged->push_back(Staged{loc->segment, loc->offset, {}});
    staged->back().bytes.reserve(sb_.segment_size / 4);
  }
  auto& bytes = staged->back().bytes;
  bytes.insert(bytes.end(), head.begin(), head.end());
  bytes.insert(bytes.end(), tail.begin(), tail.end());
  return Status::Ok();
}

Status ChunkStore::WriteStaged(std::vector<Staged>* staged, std::vector<uint32_t>* closed) {
  if (staged->empty()) return Status::Ok();
  Status s;
  if (device_->direct_writes()) {
    s = WriteStagedDirect(*staged);
  } else {
    std::vector<IoOp> ops;
    for (const Staged& st : *staged) ops.push_back(IoOp::Write(sb_.SegmentOffset(st.segment) + st.start, st.data()));
    s = device_->Submit(ops);
  }
  if (s.ok()) s = device_->Sync();
  {
    // The next write starts on a fresh block: blocks holding durable records are never rewritten.
    std::lock_guard lock(state_mu_);
    if (open_segment_ >= 0) {
      open_offset_ = static_cast<uint32_t>(RoundUp(open_offset_, kBlockSize));
      if (!s.ok() || open_offset_ + kRecordHeaderSize + 64 > sb_.segment_size) {
        closed->push_back(static_cast<uint32_t>(open_segment_));
        open_segment_ = -1;
      }
    }
  }
  staged->clear();
  return s.WithContext("writing chunk data");
}

Status ChunkStore::WriteStagedDirect(const std::vector<Staged>& staged) {
  constexpr size_t kBounceBytes = 8 << 20;
  if (!bounce_) {
    bounce_.reset(static_cast<std::byte*>(std::aligned_alloc(kBlockSize, kBounceBytes)));
    if (!bounce_) return Status::Error(ENOMEM, "no memory for the write buffer");
  }
  std::byte* const bounce = bounce_.get();
  std::vector<IoOp> ops;
  size_t used = 0;        // bounce bytes taken by the ops in `ops`
  size_t fill = 0;        // bounce bytes of the op being filled, after `used`
  uint64_t op_offset = 0; // device offset of that op
  bool open = false;      // whether an op is being filled
  auto close_op = [&] {
    if (!open) return;
    const size_t padded = RoundUp(fill, kBlockSize);
    std::memset(bounce + used + fill, 0, padded - fill);
    ops.push_back(IoOp::DirectWrite(op_offset, {bounce + used, padded}));
    used += padded;
    fill = 0;
    open = false;
  };
  auto submit = [&] {
    close_op();
    Status s = device_->Submit(ops);
    ops.clear();
    used = 0;
    return s;
  };
  for (size_t i = 0; i < staged.size(); ++i) {
    const Staged& st = staged[i];
    uint64_t offset = sb_.SegmentOffset(st.segment) + st.start;
    const bool continues = open && staged[i - 1].segment == st.segment &&
                           staged[i - 1].start + staged[i - 1].data().size() == st.start;
    if (!continues) {
      close_op();
      if (offset % kBlockSize != 0) {
        // Not where a write starts; never padded over what precedes it.
        ops.push_back(IoOp::Write(offset, st.data()));
        continue;
      }
    }
    std::span<const std::byte> rest = st.data();
    while (!rest.empty()) {
      if (used + fill == kBounceBytes) QCFS_RETURN_IF_ERROR(submit());
      if (!open) {
        op_offset = offset;
        open = true;
      }
      const size_t n = std::min(rest.size(), kBounceBytes - used - fill);
      std::memcpy(bounce + used + fill, rest.data(), n);
      fill += n;
      offset += n;
      rest = rest.subspan(n);
    }
  }
  return submit();
}

Result<std::vector<bool>> ChunkStore::Known(std::span<const Fingerprint> fps) {
  std::vector<bool> known(fps.size(), false);
  {
    std::lock_guard lock(state_mu_);
    for (size_t i = 0; i < fps.size(); ++i) known[i] = provisional_.count(fps[i]) != 0;
  }
  for (size_t i = 0; i < fps.size(); ++i) {
    if (known[i]) continue;
    QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(schema::ChunkKey(fps[i])));
    known[i] = value.has_value();
  }
  return known;
}

Status ChunkStore::WriteRecords(std::span<const EncodedRecord* const> records) {
  std::lock_guard wlock(write_mu_);
  std::vector<Staged> staged;
  std::vector<uint32_t> closed;
  std::vector<Location> where;
  Status s;
  for (const EncodedRecord* r : records) {
    Location loc{};
    s = StageRecord(r->bytes, r->borrowed_payload, &staged, &closed, &loc, /*borrow=*/true);
    if (!s.ok()) break;
    where.push_back(loc);
  }
  if (s.ok()) s = WriteStaged(&staged, &closed);
  std::lock_guard lock(state_mu_);
  for (size_t i = 0; i < where.size() && s.ok(); ++i) {
    const EncodedRecord* r = records[i];
    for (const EncodedRecord::Member& m : r->members) {
      auto [it, inserted] = provisional_.try_emplace(m.fp);
      it->second.users += 1;
      if (!inserted) continue;  // written twice: this copy is dead space
      ChunkIndexRecord& rec = it->second.rec;
      rec.segment = where[i].segment;
      rec.offset = where[i].offset;
      rec.record_len = static_cast<uint32_t>(r->size());
      rec.raw_len = m.raw_len;
      rec.codec = static_cast<uint8_t>(r->codec);
      rec.pack_offset = m.pack_offset;
      rec.pack_raw = r->pack_raw;
      rec.share = m.share;
      ++pinned_[rec.segment];
    }
  }
  for (uint32_t seg : closed) FreeSegmentLocked(seg);
  return s;
}

void ChunkStore::ForgetProvisional(std::span<const EncodedRecord* const> records) {
  std::lock_guard lock(state_mu_);
  for (const EncodedRecord* r : records) {
    for (const EncodedRecord::Member& m : r->members) {
      auto it = provisional_.find(m.fp);
      if (it == provisional_.end() || --it->second.users > 0) continue;
      uint32_t seg = it->second.rec.segment;
      provisional_.erase(it);
      if (--pinned_[seg] == 0) {
        pinned_.erase(seg);
        FreeSegmentLocked(seg);
      }
    }
  }
}

// Where a record is read to. A plain record's prefix (header, and a raw
// record's block table) and payload are read apart, two reads in one
// submission: an uncompressed chunk's payload lands in the very buffer
// handed out, not copied out of the record. Of a raw record (format 2) only
// the blocks holding the wanted range are read. A pack is read whole, and so
// is a record the index says is no longer than a header (parsing then says
// what is wrong). REQUIRES: RecordOffset(rec) succeeded.
struct ChunkStore::RecordRead {
  RecordRead(const ChunkIndexRecord& rec, ChunkRange want)
      : split(!rec.packed() && rec.record_len > kRecordHeaderSize) {
    if (!split) {
      whole.resize(rec.record_len);
      return;
    }
    size_t prefix_len = kRecordHeaderSize;
    uint64_t first = 0;
    uint64_t end = rec.record_len - kRecordHeaderSize;
    const size_t table = internal::BlockTableLength(rec.raw_len);
    if (rec.codec == static_cast<uint8_t>(Codec::kNone) && rec.record_len == kRecordHeaderSize + table + rec.raw_len) {
      // Format 2 (the header says so, or parsing fails): the blocks of the range.
      prefix_len += table;
      const uint64_t lo = std::min<uint64_t>(want.offset, rec.raw_len);
      const uint64_t hi = std::min<uint64_t>(uint64_t{want.offset} + want.length, rec.raw_len);
      first = lo / internal::kSumBlock * internal::kSumBlock;
      end = hi > lo ? std::min<uint64_t>((hi + internal::kSumBlock - 1) / internal::kSumBlock * internal::kSumBlock,
                                         rec.raw_len)
                    : first;
    }
    prefix.resize(prefix_len);
    payload_offset = static_cast<uint32_t>(first);
    payload = std::make_shared<UninitBytes>(end - first);
  }
  // The reads that fill it, the record being at device offset `offset`.
  void AddOps(uint64_t offset, std::vector<IoOp>* ops) {
    if (!split) {
      ops->push_back(IoOp::Read(offset, whole));
      return;
    }
    ops->push_back(IoOp::Read(offset, prefix));
    if (!payload->empty()) ops->push_back(IoOp::Read(offset + prefix.size() + payload_offset, *payload));
  }

  const bool split;
  UninitBytes prefix;                    // split: header, and a raw record's block table
  uint32_t payload_offset = 0;           // split: where in the payload `payload` starts
  std::shared_ptr<UninitBytes> payload;  // split
  UninitBytes whole;                     // not split
};

Result<ChunkData> ChunkStore::Read(const Fingerprint& fp) {
  if (auto hit = CacheGet(fp)) return hit;
  if (auto loc = LocationGet(fp)) {
    if (read_hook_) read_hook_();
    auto data = ReadChunk(fp, *loc);
    if (data.ok()) {
      CachePut(fp, *data);
      return data;
    }
    LocationErase(fp);  // moved or damaged: the index says which
  }
  Status last;
  ChunkIndexRecord prev{};
  for (int attempt = 0; attempt < 3; ++attempt) {
    QCFS_ASSIGN_OR_RETURN(ChunkIndexRecord rec, IndexRecord(fp));
    // The same location twice: the damage is real, not a move by the cleaner.
    if (attempt > 0 && rec.segment == prev.segment && rec.offset == prev.offset) break;
    if (read_hook_) read_hook_();
    auto data = ReadChunk(fp, rec);
    if (data.ok()) {
      CachePut(fp, *data);
      LocationPut(fp, rec);
      return data;
    }
    last = data.status();
    prev = rec;
  }
  return last;
}

std::vector<Result<ChunkData>> ChunkStore::ReadMany(std::span<const Fingerprint> fps) {
  std::vector<ChunkRange> all(fps.size());
  std::vector<Result<ChunkData>> out;
  out.reserve(fps.size());
  for (auto& piece : ReadRanges(fps, all)) {
    if (piece.ok()) {
      out.emplace_back(std::move(piece->data));
    } else {
      out.emplace_back(piece.status());
    }
  }
  return out;
}

std::vector<Result<ChunkPiece>> ChunkStore::ReadRanges(std::span<const Fingerprint> fps,
                                                       std::span<const ChunkRange> ranges) {
  std::vector<Result<ChunkPiece>> out;
  out.reserve(fps.size());
  if (ranges.size() != fps.size()) {
    out.assign(fps.size(), Status::Errorf(EINVAL, "{} ranges for {} chunks", ranges.size(), fps.size()));
    return out;
  }
  struct Miss {
    size_t i;
    ChunkIndexRecord rec;
    bool cached;                      // rec came from the location cache
    std::unique_ptr<RecordRead> buf;  // filled by the reads; null when the location is bad
    bool read = false;                // decoded into out[i]
  };
  std::vector<Miss> misses;
  std::vector<IoOp> ops;
  for (size_t i = 0; i < fps.size(); ++i) {
    if (auto hit = CacheGet(fps[i])) {
      out.emplace_back(ChunkPiece{std::move(hit), 0});
      continue;
    }
    std::optional<ChunkIndexRecord> loc = LocationGet(fps[i]);
    Result<ChunkIndexRecord> rec = loc ? Result<ChunkIndexRecord>(*loc) : IndexRecord(fps[i]);
    if (!rec.ok()) {
      out.emplace_back(rec.status());
      continue;
    }
    out.emplace_back(Status::Error(EIO, "chunk was not read"));  // replaced below
    misses.push_back({i, *rec, loc.has_value()});
  }
  if (misses.empty()) return out;
  if (read_hook_) read_hook_();
  for (Miss& m : misses) {
    auto offset = RecordOffset(fps[m.i], m.rec);
    if (!offset.ok()) continue;  // Read() below reports it, after a second look at the index
    m.buf = std::make_unique<RecordRead>(m.rec, ranges[m.i]);
    m.buf->AddOps(*offset, &ops);
  }
  if (device_->Submit(ops).ok()) {
    for (Miss& m : misses) {
      if (!m.buf) continue;
      auto piece = DecodeChunk(fps[m.i], m.rec, m.buf.get());
      if (!piece.ok()) continue;
      if (piece->offset == 0 && piece->data->size() == m.rec.raw_len) CachePut(fps[m.i], piece->data);
      if (!m.cached) LocationPut(fps[m.i], m.rec);
      out[m.i] = std::move(piece);
      m.read = true;
    }
  }
  // Whatever failed takes the one-chunk path: it looks the chunk up again
  // (the cleaner may have moved it), reads it whole and says what is wrong.
  for (const Miss& m : misses) {
    if (m.read) continue;
    if (m.cached) LocationErase(fps[m.i]);
    auto data = Read(fps[m.i]);
    if (data.ok()) {
      out[m.i] = ChunkPiece{std::move(*data), 0};
    } else {
      out[m.i] = data.status();
    }
  }
  return out;
}

Result<ChunkIndexRecord> ChunkStore::IndexRecord(const Fingerprint& fp) {
  QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(schema::ChunkKey(fp)));
  if (!value.has_value()) return Status::Errorf(ENOENT, "chunk {} is not in the index", fp.ShortHex());
  ChunkIndexRecord rec;
  if (!ChunkIndexRecord::Decode(*value, &rec)) {
    return Status::Errorf(EIO, "chunk {}: malformed index record", fp.ShortHex());
  }
  return rec;
}

Result<uint64_t> ChunkStore::RecordOffset(const Fingerprint& fp, const ChunkIndexRecord& rec) const {
  if (rec.segment >= segment_count_.load(std::memory_order_acquire) || uint64_t{rec.offset} + rec.record_len > sb_.segment_size ||
      rec.record_len < kRecordHeaderSize) {
    return Status::Errorf(EIO, "chunk {} at segment {} offset {}: location is outside the segment area", fp.ShortHex(),
                          rec.segment, rec.offset);
  }
  return sb_.SegmentOffset(rec.segment) + rec.offset;
}

Result<ChunkData> ChunkStore::ReadChunk(const Fingerprint& fp, const ChunkIndexRecord& rec) {
  QCFS_ASSIGN_OR_RETURN(uint64_t offset, RecordOffset(fp, rec));
  RecordRead record(rec, ChunkRange{});
  std::vector<IoOp> ops;
  record.AddOps(offset, &ops);
  QCFS_RETURN_IF_ERROR(device_->Submit(ops).WithContext(
      fmt::format("chunk {} at segment {} offset {}", fp.ShortHex(), rec.segment, rec.offset)));
  QCFS_ASSIGN_OR_RETURN(ChunkPiece piece, DecodeChunk(fp, rec, &record));
  return std::move(piece.data);
}

Result<ChunkPiece> ChunkStore::DecodeChunk(const Fingerprint& fp, const ChunkIndexRecord& rec,
                                          RecordRead* record) const {
  auto where = [&] { return fmt::format("chunk {} at segment {} offset {}", fp.ShortHex(), rec.segment, rec.offset); };
  internal::RecordView v;
  std::string why;
  const bool parsed = record->split ? internal::ParsePlainRecord(record->prefix, record->payload_offset,
                                                                 *record->payload, &v, &why)
                                    : internal::ParseRecord(record->whole, &v, &why);
  if (!parsed) return Status::Errorf(EIO, "{}: {}", where(), why);
  bool match = v.total_len == rec.record_len && static_cast<uint8_t>(v.codec) == rec.codec &&
               v.pack == rec.packed();
  if (match && rec.packed()) {
    match = false;
    uint32_t pos = 0;
    for (const auto& m : v.members) {
      if (pos == rec.pack_offset) {
        match = m.Matches(fp) && m.raw_len == rec.raw_len && v.raw_len == rec.pack_raw;
        break;
      }
      pos += m.raw_len;
    }
  } else if (match) {
    match = v.members[0].Matches(fp) && v.raw_len == rec.raw_len;
  }
  if (!match) return Status::Errorf(EIO, "{}: record does not match the index", where());
  if (v.codec == Codec::kNone && !rec.packed()) {
    // The payload (or the part read) is the chunk: no copy when read apart.
    if (record->split) return ChunkPiece{std::move(record->payload), v.payload_offset};
    return ChunkPiece{std::make_shared<const UninitBytes>(v.payload.begin(), v.payload.end()), 0};
  }
  auto raw = std::make_shared<UninitBytes>(v.raw_len);
  QCFS_RETURN_IF_ERROR(Decompress(v.codec, v.payload, *raw).WithContext(where()));
  if (!rec.packed()) return ChunkPiece{std::move(raw), 0};
  return ChunkPiece{std::make_shared<const UninitBytes>(raw->begin() + rec.pack_offset,
                                                        raw->begin() + rec.pack_offset + rec.raw_len),
                    0};
}

std::string ChunkStore::VerifyChunk(const Fingerprint& fp, const ChunkIndexRecord& rec, bool full) {
  auto data = ReadChunk(fp, rec);
  if (!data.ok()) return data.status().ToString();
  if (full && Fingerprint::Of(**data) != fp) {
    return fmt::format("chunk {} at segment {} offset {}: content does not match its fingerprint", fp.ShortHex(),
                       rec.segment, rec.offset);
  }
  return "";
}

ChunkData ChunkStore::CacheGet(const Fingerprint& fp) {
  std::lock_guard lock(cache_mu_);
  auto it = cache_.find(fp);
  if (it == cache_.end()) return nullptr;
  cache_lru_.splice(cache_lru_.begin(), cache_lru_, it->second.lru);
  return it->second.data;
}

void ChunkStore::CachePut(const Fingerprint& fp, ChunkData data) {
  if (options_.read_cache_bytes == 0) return;
  std::lock_guard lock(cache_mu_);
  if (cache_.count(fp) != 0) return;
  cache_lru_.push_front(fp);
  cache_bytes_ += data->size();
  cache_.emplace(fp, CacheEntry{std::move(data), cache_lru_.begin()});
  while (cache_bytes_ > options_.read_cache_bytes && !cache_lru_.empty()) {
    auto victim = cache_.find(cache_lru_.back());
    cache_bytes_ -= victim->second.data->size();
    cache_.erase(victim);
    cache_lru_.pop_back();
  }
}

std::optional<ChunkIndexRecord> ChunkStore::LocationGet(const Fingerprint& fp) {
  std::lock_guard lock(loc_mu_);
  auto it = locations_.find(fp);
  if (it == locations_.end()) return std::nullopt;
  return it->second;
}

void ChunkStore::LocationPut(const Fingerprint& fp, const ChunkIndexRecord& rec) {
  const size_t limit = options_.read_cache_bytes / kLocationEntryCost;
  if (limit == 0) return;
  std::lock_guard lock(loc_mu_);
  if (locations_.size() >= limit) locations_.clear();
  locations_.insert_or_assign(fp, rec);
}

void ChunkStore::LocationErase(const Fingerprint& fp) {
  std::lock_guard lock(loc_mu_);
  locations_.erase(fp);
}

Status ChunkStore::MakeRoom(uint64_t bytes) {
  auto enough = [&] {
    std::lock_guard lock(state_mu_);
    return ImmediateLocked() >= bytes + sb_.segment_size;
  };
  if (enough()) return Status::Ok();
  QCFS_RETURN_IF_ERROR(SyncFreed());
  if (enough()) return Status::Ok();
  auto cleaned = Clean(bytes / sb_.segment_size + 2);
  return cleaned.ok() ? Status::Ok() : cleaned.status();
}

void ChunkStore::Grow(uint64_t segment_count) {
  std::lock_guard lock(state_mu_);
  if (segment_count <= sb_.segment_count) return;
  live_.resize(segment_count, 0);
  seg_state_.resize(segment_count, kFree);
  sb_.segment_count = segment_count;
  segment_count_.store(segment_count, std::memory_order_release);
}

Result<uint64_t> ChunkStore::Clean(uint64_t want_free, uint64_t max_victims) {
  uint64_t reclaimed = 0;
  QCFS_RETURN_IF_ERROR(SyncFreed());
  for (uint64_t victims = 0; victims < max_victims; ++victims) {
    uint32_t victim = 0;
    bool found = false;
    {
      std::lock_guard lock(state_mu_);
      if (space_->Usage().free_segments >= want_free + MetaReserve()) break;
      uint32_t best = sb_.segment_size;
      const auto limit = static_cast<uint32_t>(options_.clean_below * sb_.segment_size);
      for (uint32_t s = 0; s < sb_.segment_count; ++s) {
        if (seg_state_[s] != kInUse || static_cast<int64_t>(s) == open_segment_ || pinned_.count(s) != 0) continue;
        if (live_[s] < limit && live_[s] < best) {
          best = live_[s];
          victim = s;
          found = true;
        }
      }
      // Compacting a segment pays only if there is room to take its live bytes.
      if (found && live_[victim] > 0 && space_->Usage().free_segments <= MetaReserve() &&
          (open_segment_ < 0 || sb_.segment_size - open_offset_ < live_[victim])) {
        found = false;
      }
    }
    if (!found) break;
    auto txn = Begin();
    // Live chunks of the victim, grouped by record.
    std::map<uint32_t, std::vector<std::pair<Fingerprint, ChunkIndexRecord>>> records;
    auto it = db_->Iterate(schema::LocationPrefix(victim));
    for (it->Seek(); it->Valid(); it->Next()) {
      std::string_view sfx = it->key_suffix();
      if (sfx.size() != 8 || it->value().size() != Fingerprint::kSize) continue;
      uint32_t off, pos;
      schema::ParseU32Suffix(sfx.substr(0, 4), &off);
      schema::ParseU32Suffix(sfx.substr(4), &pos);
      Fingerprint fp = Fingerprint::FromBytes(it->value());
      QCFS_ASSIGN_OR_RETURN(auto value, db_->Get(schema::ChunkKey(fp)));
      ChunkIndexRecord rec;
      if (!value.has_value() || !ChunkIndexRecord::Decode(*value, &rec)) continue;
      if (rec.segment != victim || rec.offset != off || rec.pack_offset != pos) continue;
      records[off].emplace_back(fp, rec);
    }
    QCFS_RETURN_IF_ERROR(it->status());
    for (auto& [off, live] : records) {
      Status s = txn->Relocate(victim, off, live);
      if (!s.ok()) {
        Log(LogLevel::kWarning, "cleaner left segment {} in place: {}", victim, s.ToString());
        return reclaimed;
      }
    }
    rocksdb::WriteBatch batch;
    QCFS_RETURN_IF_ERROR(txn->Prepare(&batch));
    QCFS_RETURN_IF_ERROR(db_->Write(&batch, false));
    txn->Committed();
    txn.reset();
    {
      std::lock_guard lock(state_mu_);
      if (live_[victim] != 0) {
        Log(LogLevel::kWarning, "segment {} still holds {} live bytes after cleaning", victim, live_[victim]);
        break;
      }
      FreeSegmentLocked(victim);
    }
    QCFS_RETURN_IF_ERROR(SyncFreed());
    ++reclaimed;
  }
  return reclaimed;
}

// ---------------------------------------------------------------- Txn

ChunkStore::Txn::Txn(ChunkStore* store) : store_(store), lock_(store->txn_mu_) {
  std::lock_guard lock(store_->state_mu_);
  new_stats_ = store_->stats_;
}

ChunkStore::Txn::~Txn() {
  if (committed_) return;
  // Abandoned: nothing in the index changed. Staged bytes are dead space.
  std::lock_guard lock(store_->state_mu_);
  if (write_lock_.owns_lock() && store_->open_segment_ >= 0) {
    store_->open_offset_ = static_cast<uint32_t>(RoundUp(store_->open_offset_, kBlockSize));
  }
  for (uint32_t seg : closed_segments_) store_->FreeSegmentLocked(seg);
}

Result<ChunkStore::Txn::Entry*> ChunkStore::Txn::Lookup(const Fingerprint& fp) {
  auto it = entries_.find(fp);
  if (it != entries_.end()) return &it->second;
  QCFS_ASSIGN_OR_RETURN(auto value, store_->db_->Get(schema::ChunkKey(fp)));
  Entry e;
  if (value.has_value()) {
    if (!ChunkIndexRecord::Decode(*value, &e.rec)) {
      return Status::Errorf(EIO, "chunk {}: malformed index record", fp.ShortHex());
    }
    e.existed = true;
    e.original_refcount = e.rec.refcount;
    return &entries_.emplace(fp, e).first->second;
  }
  {
    std::lock_guard lock(store_->state_mu_);
    auto p = store_->provisional_.find(fp);
    if (p == store_->provisional_.end()) return static_cast<Entry*>(nullptr);
    e.rec = p->second.rec;
  }
  // Written by WriteRecords, not yet indexed: it counts from zero references.
  e.rec.refcount = 0;
  return &entries_.emplace(fp, e).first->second;
}

Status ChunkStore::Txn::Stage(std::span<const std::byte> record, Location* loc) {
  if (!write_lock_.owns_lock()) write_lock_ = std::unique_lock<std::mutex>(store_->write_mu_);
  return store_->StageRecord(record, {}, &staged_, &closed_segments_, loc);
}

Status ChunkStore::Txn::AddRef(const ChunkContent& chunk, const CompressionSpec& spec) {
  QCFS_ASSIGN_OR_RETURN(Entry * e, Lookup(chunk.fp));
  if (e == nullptr) {
    EncodedRecord r = EncodeChunk(chunk, spec);
    Location loc{};
    QCFS_RETURN_IF_ERROR(Stage(r.bytes, &loc));
    Entry ne;
    ne.rec.segment = loc.segment;
    ne.rec.offset = loc.offset;
    ne.rec.record_len = static_cast<uint32_t>(r.bytes.size());
    ne.rec.raw_len = r.members[0].raw_len;
    ne.rec.codec = static_cast<uint8_t>(r.codec);
    ne.rec.share = r.members[0].share;
    e = &entries_.emplace(chunk.fp, ne).first->second;
  }
  if (e->rec.refcount == 0) {  // a new chunk, or one freed earlier in this txn
    new_stats_.chunks += 1;
    new_stats_.unique_bytes += e->rec.raw_len;
    new_stats_.stored_bytes += e->rec.share;
    live_delta_[e->rec.segment] += e->rec.share;
  }
  e->rec.refcount += 1;
  new_stats_.referenced_bytes += e->rec.raw_len;
  return Status::Ok();
}

Status ChunkStore::Txn::AddRefExisting(const Fingerprint& fp) {
  QCFS_ASSIGN_OR_RETURN(Entry * e, Lookup(fp));
  if (e == nullptr || e->rec.refcount == 0) {
    return Status::Errorf(ENOENT, "chunk {} is not in the index", fp.ShortHex());
  }
  e->rec.refcount += 1;
  new_stats_.referenced_bytes += e->rec.raw_len;
  return Status::Ok();
}

Status ChunkStore::Txn::DropRef(const Fingerprint& fp) {
  QCFS_ASSIGN_OR_RETURN(Entry * e, Lookup(fp));
  if (e == nullptr || e->rec.refcount == 0) {
    Log(LogLevel::kWarning, "dropping a reference to chunk {} that holds none; qcfs check will report it",
        fp.ShortHex());
    return Status::Ok();
  }
  e->rec.refcount -= 1;
  new_stats_.referenced_bytes -= e->rec.raw_len;
  if (e->rec.refcount == 0) {
    new_stats_.chunks -= 1;
    new_stats_.unique_bytes -= e->rec.raw_len;
    new_stats_.stored_bytes -= e->rec.share;
    live_delta_[e->rec.segment] -= e->rec.share;
  }
  return Status::Ok();
}

Status ChunkStore::Txn::Relocate(uint32_t segment, uint32_t offset,
                                 const std::vector<std::pair<Fingerprint, ChunkIndexRecord>>& live) {
  const ChunkIndexRecord& first = live.front().second;
  std::vector<std::byte> bytes(first.record_len);
  QCFS_RETURN_IF_ERROR(store_->device_->Read(store_->sb_.SegmentOffset(segment) + offset, bytes));
  internal::RecordView v;
  std::string why;
  if (!internal::ParseRecord(bytes, &v, &why)) {
    return Status::Errorf(EIO, "record at segment {} offset {}: {}; run qcfs check", segment, offset, why);
  }
  std::vector<ChunkIndexRecord> moved;
  if (live.size() == v.members.size()) {
    // Every chunk of the record lives: copy it as it is.
    Location loc{};
    QCFS_RETURN_IF_ERROR(Stage(bytes, &loc));
    for (const auto& [fp, rec] : live) {
      ChunkIndexRecord n = rec;
      n.segment = loc.segment;
      n.offset = loc.offset;
      moved.push_back(n);
    }
  } else {
    // A pack with dead members: repack what lives.
    std::vector<std::byte> raw(v.raw_len);
    QCFS_RETURN_IF_ERROR(Decompress(v.codec, v.payload, raw));
    std::vector<ChunkContent> contents;
    for (const auto& [fp, rec] : live) {
      if (uint64_t{rec.pack_offset} + rec.raw_len > raw.size()) return Status::Error(EIO, "pack member out of range");
      contents.push_back({fp, std::span<const std::byte>(raw).subspan(rec.pack_offset, rec.raw_len)});
    }
    CompressionSpec spec{v.codec == Codec::kNone ? Codec::kLz4 : v.codec, 0};
    EncodedRecord r = contents.size() == 1 ? EncodeChunk(contents[0], spec) : EncodePack(contents, spec);
    Location loc{};
    QCFS_RETURN_IF_ERROR(Stage(r.bytes, &loc));
    for (size_t i = 0; i < live.size(); ++i) {
      ChunkIndexRecord n = live[i].second;
      n.segment = loc.segment;
      n.offset = loc.offset;
      n.record_len = static_cast<uint32_t>(r.bytes.size());
      n.codec = static_cast<uint8_t>(r.codec);
      n.pack_offset = r.members[i].pack_offset;
      n.pack_raw = r.pack_raw;
      n.share = r.members[i].share;
      moved.push_back(n);
    }
  }
  for (size_t i = 0; i < live.size(); ++i) {
    const ChunkIndexRecord& old = live[i].second;
    live_delta_[old.segment] -= old.share;
    live_delta_[moved[i].segment] += moved[i].share;
    new_stats_.stored_bytes += moved[i].share;
    new_stats_.stored_bytes -= old.share;
    moves_.push_back(Move{live[i].first, old, moved[i]});
  }
  return Status::Ok();
}

Status ChunkStore::Txn::Prepare(rocksdb::WriteBatch* batch) {
  if (write_lock_.owns_lock()) {
    Status s = store_->WriteStaged(&staged_, &closed_segments_);
    write_lock_.unlock();
    QCFS_RETURN_IF_ERROR(s);
  }
  for (auto& [fp, e] : entries_) {
    std::string key = schema::ChunkKey(fp);
    if (e.rec.refcount == 0) {
      if (e.existed) {
        batch->Delete(Sl(key));
        batch->Delete(Sl(schema::LocationKey(e.rec.segment, e.rec.offset, e.rec.pack_offset)));
      }
      continue;
    }
    if (e.existed && e.rec.refcount == e.original_refcount) continue;
    std::string value;
    e.rec.EncodeTo(&value);
    batch->Put(Sl(key), Sl(value));
    if (!e.existed) {
      batch->Put(Sl(schema::LocationKey(e.rec.segment, e.rec.offset, e.rec.pack_offset)),
                 rocksdb::Slice(fp.AsStringView()));
    }
  }
  for (Move& m : moves_) {
    std::string value;
    m.new_rec.EncodeTo(&value);
    batch->Put(Sl(schema::ChunkKey(m.fp)), Sl(value));
    batch->Delete(Sl(schema::LocationKey(m.old_rec.segment, m.old_rec.offset, m.old_rec.pack_offset)));
    batch->Put(Sl(schema::LocationKey(m.new_rec.segment, m.new_rec.offset, m.new_rec.pack_offset)),
               rocksdb::Slice(m.fp.AsStringView()));
  }
  {
    std::lock_guard lock(store_->state_mu_);
    for (auto& [seg, delta] : live_delta_) {
      if (delta == 0) continue;
      int64_t now = static_cast<int64_t>(store_->live_[seg]) + delta;
      if (now < 0 || now > static_cast<int64_t>(store_->sb_.segment_size)) {
        return Status::Errorf(EUCLEAN, "segment {} usage would become {}; run qcfs check --repair", seg, now);
      }
      if (now == 0) {
        batch->Delete(Sl(schema::SegmentKey(seg)));
      } else {
        std::string value;
        schema::SegmentRecord{static_cast<uint64_t>(now)}.EncodeTo(&value);
        batch->Put(Sl(schema::SegmentKey(seg)), Sl(value));
      }
    }
  }
  if (has_changes()) {
    std::string value;
    new_stats_.EncodeTo(&value);
    batch->Put(Sl(schema::SystemKey(schema::kStatsName)), Sl(value));
  }
  return Status::Ok();
}

void ChunkStore::Txn::Committed() {
  committed_ = true;
  std::lock_guard lock(store_->state_mu_);
  for (auto& [seg, delta] : live_delta_) {
    store_->live_[seg] = static_cast<uint32_t>(static_cast<int64_t>(store_->live_[seg]) + delta);
    if (store_->live_[seg] == 0) store_->FreeSegmentLocked(seg);
  }
  for (uint32_t seg : closed_segments_) store_->FreeSegmentLocked(seg);
  store_->stats_ = new_stats_;
}

}  // namespace qcfs
