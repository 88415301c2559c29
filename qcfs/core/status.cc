#include "qcfs/core/status.h"

#include <cstring>

namespace qcfs {

std::string Status::ToString() const {
  if (ok()) return "OK";
  if (!message_.empty()) return message_;
  return std::strerror(code_);
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, fmt::format("{}: {}", context, ToString()));
}

Status ErrnoStatus(int err, std::string_view what) {
  return Status::Error(err, fmt::format("{}: {}", what, std::strerror(err)));
}

}  // namespace qcfs
