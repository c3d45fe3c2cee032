// AVX-512, 16 lanes: one broadcast per nonzero feeds 16 vector FMAs (256 wide positions) on padded
// layouts, 4 on compact 1x1 ones; the accumulators leave room for the broadcast.
#include "conv2d-csr.h"

namespace st {
void conv2d_csr_avx512(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  conv2d_csr_impl<IsaAvx512, 16, 4>(j, r0, r1, q0, q1);
}
}  // namespace st
