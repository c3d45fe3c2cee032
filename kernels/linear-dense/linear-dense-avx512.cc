// AVX-512, 16 lanes: four rows per loaded vector of x.
#include "linear-dense.h"

namespace st {
void linear_dense_avx512(const LinearJob& j, int32_t r0, int32_t r1) {
  linear_dense_impl<IsaAvx512>(j, r0, r1);
}
}  // namespace st
