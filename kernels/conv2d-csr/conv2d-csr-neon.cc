// AArch64 NEON, 4 lanes: one broadcast per nonzero feeds 4 vector FMAs; 4 accumulators leave room for loads.
#include "conv2d-csr.h"

namespace st {
void conv2d_csr_neon(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  conv2d_csr_impl<IsaNeon, 4, 4>(j, r0, r1, q0, q1);
}
}  // namespace st
