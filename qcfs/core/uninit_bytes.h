// UninitBytes: a byte vector whose new elements are left uninitialised,
// for buffers that are filled right after they are sized (a chunk a whole
// write covers, a record read from the device): zeroing them first would
// be a wasted pass over the memory.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

namespace qcfs {

template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  using std::allocator<T>::allocator;
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

using UninitBytes = std::vector<std::byte, DefaultInitAllocator<std::byte>>;

}  // namespace qcfs
