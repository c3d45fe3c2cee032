// Direct dense depthwise (dwconv2d-dense.h), neon. The driver calls it only for dw_direct_supported shapes.
#include "dwconv2d-dense.h"

namespace st {
void dwconv2d_dense_neon(const DwJob& j, int32_t c0, int32_t c1) { dw_direct<IsaNeon>(j, c0, c1); }
}  // namespace st
