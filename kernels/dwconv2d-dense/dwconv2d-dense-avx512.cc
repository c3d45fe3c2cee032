// Direct dense depthwise (dwconv2d-dense.h), avx512. The driver calls it only for dw_direct_supported shapes.
#include "dwconv2d-dense.h"

namespace st {
void dwconv2d_dense_avx512(const DwJob& j, int32_t c0, int32_t c1) { dw_direct<IsaAvx512>(j, c0, c1); }
}  // namespace st
