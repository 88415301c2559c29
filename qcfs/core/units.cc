#include "qcfs/core/units.h"

#include <cctype>
#include <charconv>
#include <cmath>

namespace qcfs {

Result<uint64_t> ParseSize(std::string_view text) {
  std::string_view s = text;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  size_t digits = 0;
  while (digits < s.size() && (std::isdigit(static_cast<unsigned char>(s[digits])) || s[digits] == '.')) ++digits;
  if (digits == 0) return Status::Errorf(EINVAL, "invalid size '{}': expected a number such as 4096, 64K or 20G", text);
  double number = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + digits, number);
  if (ec != std::errc() || ptr != s.data() + digits) {
    return Status::Errorf(EINVAL, "invalid size '{}'", text);
  }
  std::string unit;
  for (char c : s.substr(digits)) {
    if (!std::isspace(static_cast<unsigned char>(c))) unit.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  uint64_t mult = 1;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") mult = 1ull << 10;
  else if (unit == "m" || unit == "mb" || unit == "mib") mult = 1ull << 20;
  else if (unit == "g" || unit == "gb" || unit == "gib") mult = 1ull << 30;
  else if (unit == "t" || unit == "tb" || unit == "tib") mult = 1ull << 40;
  else if (unit == "p" || unit == "pb" || unit == "pib") mult = 1ull << 50;
  else return Status::Errorf(EINVAL, "invalid size '{}': unknown unit '{}' (use K, M, G, T)", text, unit);
  double bytes = number * static_cast<double>(mult);
  if (bytes >= 18446744073709551615.0) return Status::Errorf(EINVAL, "size '{}' is too large", text);
  return static_cast<uint64_t>(std::llround(bytes));
}

std::string FormatSize(uint64_t bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  if (v >= 100) return fmt::format("{:.0f} {}", v, kUnits[u]);
  if (v >= 10) return fmt::format("{:.1f} {}", v, kUnits[u]);
  return fmt::format("{:.2f} {}", v, kUnits[u]);
}

}  // namespace qcfs
