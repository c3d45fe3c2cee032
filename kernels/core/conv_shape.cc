#include "conv_shape.h"

#include "errors.h"

namespace st {
int check_conv_shape(const char* what, const st_conv2d_shape* s, const void* x, const void* out,
                     int32_t* OH, int32_t* OW) {
  if (!s) return Fail(ST_EINVAL) << what << ": shape is null";
  if (s->n < 1 || s->cin < 1 || s->h < 1 || s->w < 1 || s->cout < 1)
    return Fail(ST_EINVAL) << what << ": sizes must be >= 1 (n=" << s->n << " cin=" << s->cin
                           << " h=" << s->h << " w=" << s->w << " cout=" << s->cout << ")";
  if (s->kh < 1 || s->kw < 1 || s->kh > 64 || s->kw > 64)
    return Fail(ST_EINVAL) << what << ": kernel " << s->kh << "x" << s->kw << " outside 1..64";
  if (s->stride < 1 || s->stride > 64) return Fail(ST_EINVAL) << what << ": stride " << s->stride << " outside 1..64";
  if (s->pad < 0 || s->pad >= 64) return Fail(ST_EINVAL) << what << ": padding " << s->pad << " outside 0..63";
  if (s->act != ST_ACT_NONE && s->act != ST_ACT_RELU && s->act != ST_ACT_RELU6)
    return Fail(ST_EINVAL) << what << ": act code " << s->act << " (0 none, 1 relu, 2 relu6)";
  const int64_t hp = static_cast<int64_t>(s->h) + 2 * s->pad, wp = static_cast<int64_t>(s->w) + 2 * s->pad;
  if (hp < s->kh || wp < s->kw)
    return Fail(ST_EINVAL) << what << ": kernel " << s->kh << "x" << s->kw << " larger than padded input "
                           << hp << "x" << wp;
  if (hp > (1 << 24) || wp > (1 << 24)) return Fail(ST_EINVAL) << what << ": input too large";
  *OH = static_cast<int32_t>((hp - s->kh) / s->stride + 1);
  *OW = static_cast<int32_t>((wp - s->kw) / s->stride + 1);
  if (!x || !out) return Fail(ST_EINVAL) << what << ": input or output pointer is null";
  return ST_OK;
}
}  // namespace st
