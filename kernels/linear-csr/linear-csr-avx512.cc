// AVX-512, 16 lanes: gathered dot products over each row.
#include "linear-csr.h"

namespace st {
void linear_csr_avx512(const LinearJob& j, int32_t r0, int32_t r1) {
  linear_csr_impl<IsaAvx512>(j, r0, r1);
}
}  // namespace st
