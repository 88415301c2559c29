// Test knobs from the environment (seeds, rounds, iterations).
#pragma once

#include <cstdint>
#include <cstdlib>

namespace qcfs::testing {

// The unsigned number in environment variable `name`, or `fallback` when
// it is unset or empty.
inline uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : fallback;
}

}  // namespace qcfs::testing
