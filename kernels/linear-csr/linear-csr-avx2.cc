// AVX2+FMA, 8 lanes: gathered dot products over each row.
#include "linear-csr.h"

namespace st {
void linear_csr_avx2(const LinearJob& j, int32_t r0, int32_t r1) {
  linear_csr_impl<IsaAvx2>(j, r0, r1);
}
}  // namespace st
