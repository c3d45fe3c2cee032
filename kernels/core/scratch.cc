#include "scratch.h"

#include <cstdlib>

namespace st {
namespace {
struct Buffers {
  void* p[kNumSlots] = {};
  size_t n[kNumSlots] = {};
  ~Buffers() {
    for (void* q : p) std::free(q);
  }
};
thread_local Buffers g_buf;
}  // namespace

void* scratch(int slot, size_t bytes) {
  if (bytes == 0) bytes = 64;
  if (g_buf.n[slot] < bytes) {
    std::free(g_buf.p[slot]);
    g_buf.p[slot] = nullptr;
    g_buf.n[slot] = 0;
    // Grow by 1.5x so a net with slowly increasing layer sizes does not realloc every layer.
    size_t want = ((bytes + bytes / 2) + 63) & ~size_t(63);
    void* q = nullptr;
    if (posix_memalign(&q, 64, want) != 0) return nullptr;
    g_buf.p[slot] = q;
    g_buf.n[slot] = want;
  }
  return g_buf.p[slot];
}
}  // namespace st
