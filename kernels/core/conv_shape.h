#pragma once
#include "../include/st_kernels.h"

namespace st {
// Checks an st_conv2d_shape and computes the output size; sets the thread error on failure.
int check_conv_shape(const char* what, const st_conv2d_shape* s, const void* x, const void* out,
                     int32_t* OH, int32_t* OW);
}  // namespace st
