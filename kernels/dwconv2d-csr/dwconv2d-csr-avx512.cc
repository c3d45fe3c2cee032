// AVX-512, 16 lanes: one channel row at a time; 4 accumulators cover a wide-row tile.
#include "dwconv2d-csr.h"

namespace st {
void dwconv2d_csr_avx512(const DwJob& j, int32_t c0, int32_t c1) {
  dwconv2d_csr_impl<IsaAvx512, 4>(j, c0, c1);
}
}  // namespace st
