// AVX2+FMA, 8 lanes: four rows per loaded vector of x.
#include "linear-dense.h"

namespace st {
void linear_dense_avx2(const LinearJob& j, int32_t r0, int32_t r1) {
  linear_dense_impl<IsaAvx2>(j, r0, r1);
}
}  // namespace st
