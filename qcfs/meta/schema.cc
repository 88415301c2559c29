#include "qcfs/meta/schema.h"

#include "qcfs/core/coding.h"

namespace qcfs::schema {
namespace {

// 1: up to the primary name; 2: adds flags.
constexpr uint8_t kInodeFormat = 2;
constexpr uint8_t kInodeFormatNoFlags = 1;
constexpr uint8_t kChunkFormat = 1;

std::string Prefixed(char type, uint64_t id) {
  std::string k(1, type);
  PutBig64(&k, id);
  return k;
}

}  // namespace

std::string SystemKey(std::string_view name) {
  std::string k(1, kSystemPrefix);
  k.append(name);
  return k;
}
std::string InodeKey(uint64_t ino) { return Prefixed(kInodePrefix, ino); }
std::string DirentPrefix(uint64_t parent) { return Prefixed(kDirentPrefix, parent); }
std::string DirentKey(uint64_t parent, std::string_view name) {
  std::string k = DirentPrefix(parent);
  k.append(name);
  return k;
}
std::string ExtentPrefix(uint64_t ino) { return Prefixed(kExtentPrefix, ino); }
std::string ExtentKey(uint64_t ino, uint64_t index) {
  std::string k = ExtentPrefix(ino);
  PutBig64(&k, index);
  return k;
}
std::string XattrPrefix(uint64_t ino) { return Prefixed(kXattrPrefix, ino); }
std::string XattrKey(uint64_t ino, std::string_view name) {
  std::string k = XattrPrefix(ino);
  k.append(name);
  return k;
}
std::string OrphanKey(uint64_t ino) { return Prefixed(kOrphanPrefix, ino); }
std::string ChunkKey(const Fingerprint& fp) {
  std::string k(1, kChunkPrefix);
  k.append(fp.AsStringView());
  return k;
}
std::string SegmentKey(uint32_t segment) {
  std::string k(1, kSegmentPrefix);
  PutBig32(&k, segment);
  return k;
}

std::string LocationPrefix(uint32_t segment) {
  std::string k(1, kLocationPrefix);
  PutBig32(&k, segment);
  return k;
}
std::string LocationKey(uint32_t segment, uint32_t offset, uint32_t pack_offset) {
  std::string k = LocationPrefix(segment);
  PutBig32(&k, offset);
  PutBig32(&k, pack_offset);
  return k;
}

std::string SnapshotKey(uint64_t id) { return Prefixed(kSnapshotPrefix, id); }

std::string HistoryPrefix(std::string_view key) {
  std::string k(1, kHistoryPrefix);
  k.append(key);
  k.push_back('\0');
  return k;
}

std::string HistoryKey(std::string_view key, uint64_t epoch) {
  std::string k = HistoryPrefix(key);
  PutBig64(&k, ~epoch);
  return k;
}

bool ParseHistoryKey(std::string_view hkey, std::string_view* key, uint64_t* epoch) {
  if (hkey.size() < 1 + 1 + 8 || hkey[0] != kHistoryPrefix || hkey[hkey.size() - 9] != '\0') return false;
  *key = hkey.substr(1, hkey.size() - 10);
  *epoch = ~GetBig64(hkey.data() + hkey.size() - 8);
  return true;
}

std::string JournalPrefix(uint64_t epoch) { return Prefixed(kJournalPrefix, epoch); }

std::string JournalKey(uint64_t epoch, std::string_view key) {
  std::string k = JournalPrefix(epoch);
  k.append(key);
  return k;
}

bool ValueEpoch(std::string_view value, uint64_t* epoch) { return Decoder(value).Varint(epoch); }

bool ParseU64Suffix(std::string_view suffix, uint64_t* value) {
  if (suffix.size() != 8) return false;
  *value = GetBig64(suffix.data());
  return true;
}
bool ParseU32Suffix(std::string_view suffix, uint32_t* value) {
  if (suffix.size() != 4) return false;
  *value = GetBig32(suffix.data());
  return true;
}

void InodeRecord::EncodeTo(std::string* out) const {
  Encoder e(out);
  e.Varint(epoch);
  e.U8(kInodeFormat);
  e.Varint(mode);
  e.Varint(uid);
  e.Varint(gid);
  e.Varint(nlink);
  e.Varint(size);
  e.SignedVarint(atime_ns);
  e.SignedVarint(mtime_ns);
  e.SignedVarint(ctime_ns);
  e.SignedVarint(btime_ns);
  e.Varint(rdev);
  e.Varint(parent);
  e.Varint(chunks);
  e.String(symlink);
  e.String(name);
  e.Varint(flags);
}

bool InodeRecord::Decode(std::string_view in, InodeRecord* r) {
  Decoder d(in);
  uint8_t format;
  std::string_view link, name;
  if (!d.Varint(&r->epoch) || !d.U8(&format) || (format != kInodeFormat && format != kInodeFormatNoFlags)) {
    return false;
  }
  if (!d.VarintAs(&r->mode) || !d.VarintAs(&r->uid) || !d.VarintAs(&r->gid) ||
      !d.VarintAs(&r->nlink) || !d.Varint(&r->size) || !d.SignedVarint(&r->atime_ns) ||
      !d.SignedVarint(&r->mtime_ns) || !d.SignedVarint(&r->ctime_ns) || !d.SignedVarint(&r->btime_ns) ||
      !d.Varint(&r->rdev) || !d.Varint(&r->parent) || !d.Varint(&r->chunks) || !d.String(&link) ||
      !d.String(&name)) {
    return false;
  }
  r->symlink.assign(link);
  r->name.assign(name);
  r->flags = kInodeMayHaveXattrs;  // format 1 did not say
  if (format == kInodeFormat && !d.VarintAs(&r->flags)) return false;
  return d.done();
}

void DirentRecord::EncodeTo(std::string* out) const {
  Encoder e(out);
  e.Varint(epoch);
  e.Varint(ino);
  e.U8(type);
}

bool DirentRecord::Decode(std::string_view in, DirentRecord* r) {
  Decoder d(in);
  return d.Varint(&r->epoch) && d.Varint(&r->ino) && d.U8(&r->type) && d.done();
}

void ExtentRecord::EncodeTo(std::string* out) const {
  Encoder e(out);
  e.Varint(epoch);
  e.Bytes(fp.AsStringView());
  e.Varint(raw_len);
}

bool ExtentRecord::Decode(std::string_view in, ExtentRecord* r) {
  Decoder d(in);
  std::string_view fp;
  if (!d.Varint(&r->epoch) || !d.Bytes(Fingerprint::kSize, &fp) || !d.VarintAs(&r->raw_len) || !d.done()) {
    return false;
  }
  r->fp = Fingerprint::FromBytes(fp);
  return true;
}

void XattrRecord::EncodeTo(std::string* out) const {
  Encoder e(out);
  e.Varint(epoch);
  e.Bytes(value);
}

bool XattrRecord::Decode(std::string_view in, XattrRecord* r) {
  Decoder d(in);
  if (!d.Varint(&r->epoch)) return false;
  std::string_view rest;
  if (!d.Bytes(d.remaining(), &rest)) return false;
  r->value.assign(rest);
  return true;
}

void ChunkIndexRecord::EncodeTo(std::string* out) const {
  Encoder e(out);
  e.U8(kChunkFormat);
  e.Varint(segment);
  e.Varint(offset);
  e.Varint(record_len);
  e.Varint(raw_len);
  e.U8(codec);
  e.Varint(refcount);
  e.Varint(pack_offset);
  e.Varint(pack_raw);
  e.Varint(share);
}

bool ChunkIndexRecord::Decode(std::string_view in, ChunkIndexRecord* r) {
  Decoder d(in);
  uint8_t format;
  return d.U8(&format) && format == kChunkFormat && d.VarintAs(&r->segment) && d.VarintAs(&r->offset) &&
         d.VarintAs(&r->record_len) && d.VarintAs(&r->raw_len) && d.U8(&r->codec) && d.Varint(&r->refcount) &&
         d.VarintAs(&r->pack_offset) && d.VarintAs(&r->pack_raw) && d.VarintAs(&r->share) && d.done();
}

void SegmentRecord::EncodeTo(std::string* out) const {
  Encoder e(out);
  e.Varint(live_bytes);
}

bool SegmentRecord::Decode(std::string_view in, SegmentRecord* r) {
  Decoder d(in);
  return d.Varint(&r->live_bytes) && d.done();
}

void VolumeState::EncodeTo(std::string* out) const {
  Encoder e(out);
  e.Varint(next_ino);
  e.Varint(current_epoch);
  e.Varint(clean_unmount);
  e.Varint(inodes);
  e.Varint(next_snapshot);
}

bool VolumeState::Decode(std::string_view in, VolumeState* r) {
  Decoder d(in);
  return d.Varint(&r->next_ino) && d.Varint(&r->current_epoch) && d.Varint(&r->clean_unmount) &&
         d.Varint(&r->inodes) && d.Varint(&r->next_snapshot) && d.done();
}

void StoreStats::EncodeTo(std::string* out) const {
  Encoder e(out);
  e.Varint(chunks);
  e.Varint(unique_bytes);
  e.Varint(stored_bytes);
  e.Varint(referenced_bytes);
  e.Varint(history_bytes);
}

bool StoreStats::Decode(std::string_view in, StoreStats* r) {
  Decoder d(in);
  return d.Varint(&r->chunks) && d.Varint(&r->unique_bytes) && d.Varint(&r->stored_bytes) &&
         d.Varint(&r->referenced_bytes) && d.Varint(&r->history_bytes) && d.done();
}

void EncodeHistory(uint64_t died, std::string_view value, std::string* out) {
  Encoder e(out);
  e.Varint(died);
  e.Bytes(value);
}

bool DecodeHistory(std::string_view in, uint64_t* died, std::string_view* value) {
  Decoder d(in);
  if (!d.Varint(died)) return false;
  return d.Bytes(d.remaining(), value);
}

void SnapshotRecord::EncodeTo(std::string* out) const {
  Encoder e(out);
  e.String(name);
  e.Varint(epoch);
  e.SignedVarint(created_ns);
  e.Varint(logical_bytes);
  e.Varint(files);
  e.U8(state);
}

bool SnapshotRecord::Decode(std::string_view in, SnapshotRecord* r) {
  Decoder d(in);
  std::string_view name;
  if (!d.String(&name) || !d.Varint(&r->epoch) || !d.SignedVarint(&r->created_ns) || !d.Varint(&r->logical_bytes) ||
      !d.Varint(&r->files) || !d.U8(&r->state) || !d.done()) {
    return false;
  }
  r->name.assign(name);
  return true;
}

void PendingOp::EncodeTo(std::string* out) const {
  Encoder e(out);
  e.U8(kind);
  e.Varint(snapshot);
  e.Varint(from);
  e.Varint(to);
  e.Varint(previous);
}

bool PendingOp::Decode(std::string_view in, PendingOp* r) {
  Decoder d(in);
  return d.U8(&r->kind) && d.Varint(&r->snapshot) && d.Varint(&r->from) && d.Varint(&r->to) &&
         d.Varint(&r->previous) && d.done();
}

}  // namespace qcfs::schema
