// portable C++, 1 lane: one channel row at a time; 8 accumulators cover a wide-row tile.
#include "dwconv2d-csr.h"

namespace st {
void dwconv2d_csr_scalar(const DwJob& j, int32_t c0, int32_t c1) {
  dwconv2d_csr_impl<IsaScalar, 8>(j, c0, c1);
}
}  // namespace st
