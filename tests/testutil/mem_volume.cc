#include "tests/testutil/mem_volume.h"

namespace qcfs::testing {

Result<Attr> Resolve(Volume* v, const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return v->Lookup(kRootIno, path);
  QCFS_ASSIGN_OR_RETURN(auto d, v->Lookup(kRootIno, path.substr(0, slash)));
  return v->Lookup(d.ino, path.substr(slash + 1));
}

Result<std::string> ReadWhole(Volume* v, uint64_t ino) {
  QCFS_ASSIGN_OR_RETURN(auto a, v->GetAttr(ino));
  std::string out(a.size, '\0');
  QCFS_ASSIGN_OR_RETURN(size_t n,
                        v->Read(ino, 0, std::span<std::byte>(reinterpret_cast<std::byte*>(out.data()), out.size())));
  out.resize(n);
  return out;
}

}  // namespace qcfs::testing
