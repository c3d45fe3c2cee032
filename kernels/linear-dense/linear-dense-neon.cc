// AArch64 NEON, 4 lanes: four rows per loaded vector of x.
#include "linear-dense.h"

namespace st {
void linear_dense_neon(const LinearJob& j, int32_t r0, int32_t r1) {
  linear_dense_impl<IsaNeon>(j, r0, r1);
}
}  // namespace st
