// portable C++, 1 lane: one broadcast per nonzero feeds 8 vector FMAs; 8 accumulators leave room for loads.
#include "conv2d-csr.h"

namespace st {
void conv2d_csr_scalar(const ConvJob& j, int32_t r0, int32_t r1, int32_t q0, int32_t q1) {
  conv2d_csr_impl<IsaScalar, 8, 8>(j, r0, r1, q0, q1);
}
}  // namespace st
