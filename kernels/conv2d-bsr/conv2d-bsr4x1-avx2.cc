// AVX2+FMA, 8 lanes: 4 x 2 accumulators, 4 broadcasts and one input vector fit the register file.
#include "conv2d-bsr4x1.h"

namespace st {
void conv2d_bsr4x1_avx2(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  conv2d_bsr4x1_impl<IsaAvx2, 2>(j, r0, r1, q0, q1);
}
}  // namespace st
