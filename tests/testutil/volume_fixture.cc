#include "tests/testutil/volume_fixture.h"

#include <gtest/gtest.h>

namespace qcfs::testing {

TestVolume::TestVolume(uint64_t size, MkfsOptions mkfs, VolumeOptions options) : options_(std::move(options)) {
  image_ = dir_.Join("vol.img");
  mkfs.size = size;
  Status s = Mkfs(image_, mkfs);
  if (!s.ok()) throw std::runtime_error("mkfs: " + s.ToString());
  Open();
}

TestVolume::~TestVolume() { volume_.reset(); }

void TestVolume::Open() {
  auto v = Volume::Open(image_, options_);
  if (!v.ok()) throw std::runtime_error("open: " + v.status().ToString());
  volume_ = std::move(v).value();
}

void TestVolume::Close() {
  Status s = volume_->Close();
  EXPECT_TRUE(s.ok()) << s.ToString();
  volume_.reset();
}

void TestVolume::Reopen() {
  Close();
  Open();
}

uint64_t TestVolume::CreateFile(uint64_t parent, const std::string& name, const std::string& content) {
  auto attr = volume_->Create(parent, name, 0644, 0, Caller{0, 0});
  EXPECT_TRUE(attr.ok()) << attr.status().ToString();
  if (!attr.ok()) return 0;
  if (!content.empty()) WriteAt(attr->ino, 0, content);
  EXPECT_TRUE(volume_->Release(attr->ino).ok());
  return attr->ino;
}

std::string TestVolume::ReadAll(uint64_t ino) {
  auto attr = volume_->GetAttr(ino);
  EXPECT_TRUE(attr.ok()) << attr.status().ToString();
  if (!attr.ok()) return {};
  std::string out(attr->size, '\0');
  auto n = volume_->Read(ino, 0, std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size()));
  EXPECT_TRUE(n.ok()) << n.status().ToString();
  if (!n.ok()) return {};
  out.resize(*n);
  return out;
}

void TestVolume::WriteAt(uint64_t ino, uint64_t offset, const std::string& data) {
  auto n = volume_->Write(ino, offset, Bytes(data));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  ASSERT_EQ(*n, data.size());
}

Result<Attr> Walk(Volume* v, uint64_t root, const std::string& path) {
  uint64_t cur = root;
  Result<Attr> a = v->GetAttr(root);
  size_t pos = 0;
  while (pos < path.size()) {
    size_t slash = path.find('/', pos);
    std::string part = path.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    pos = slash == std::string::npos ? path.size() : slash + 1;
    if (part.empty()) continue;
    a = v->Lookup(cur, part);
    if (!a.ok()) return a;
    cur = a->ino;
  }
  return a;
}

Result<Attr> Resolve(Volume* v, const std::string& path) { return Walk(v, kRootIno, path); }

Result<std::string> ReadWhole(Volume* v, uint64_t ino) {
  QCFS_ASSIGN_OR_RETURN(auto a, v->GetAttr(ino));
  std::string out(a.size, '\0');
  QCFS_ASSIGN_OR_RETURN(size_t n,
                        v->Read(ino, 0, std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size())));
  out.resize(n);
  return out;
}

std::vector<std::string> Names(Volume* v, uint64_t dir) {
  std::vector<std::string> names;
  EXPECT_TRUE(v->ReadDir(dir, "", [&](const DirEntry& e) {
                 names.push_back(e.name);
                 return true;
               }).ok());
  return names;
}

}  // namespace qcfs::testing
