// AArch64 NEON, 4 lanes: gathered dot products over each row.
#include "linear-csr.h"

namespace st {
void linear_csr_neon(const LinearJob& j, int32_t r0, int32_t r1) {
  linear_csr_impl<IsaNeon>(j, r0, r1);
}
}  // namespace st
