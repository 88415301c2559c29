// Parsing and printing of human sizes ("64K", "20G", "1.5 GiB").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "qcfs/core/status.h"

namespace qcfs {

// Parses "4096", "64K", "64KiB", "20G", "1T" (binary multiples, case-insensitive).
Result<uint64_t> ParseSize(std::string_view text);

// "1.2 GiB", "64 KiB", "512 B".
std::string FormatSize(uint64_t bytes);

}  // namespace qcfs
