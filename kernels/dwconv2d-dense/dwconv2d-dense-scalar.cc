// Direct dense depthwise (dwconv2d-dense.h), scalar. The driver calls it only for dw_direct_supported shapes.
#include "dwconv2d-dense.h"

namespace st {
void dwconv2d_dense_scalar(const DwJob& j, int32_t c0, int32_t c1) { dw_direct<IsaScalar>(j, c0, c1); }
}  // namespace st
