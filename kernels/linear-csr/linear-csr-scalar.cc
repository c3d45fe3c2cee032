// portable C++, 1 lane: gathered dot products over each row.
#include "linear-csr.h"

namespace st {
void linear_csr_scalar(const LinearJob& j, int32_t r0, int32_t r1) {
  linear_csr_impl<IsaScalar>(j, r0, r1);
}
}  // namespace st
