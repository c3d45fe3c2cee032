#pragma once
#include <sstream>
#include <string>

namespace st {
// Thread-local message behind st_last_error(); set_error returns the code so drivers can
// `return fail(ST_EINVAL) << ...` style via the Fail helper.
void set_error(const std::string& msg);
void clear_error();

struct Fail {
  int code;
  std::ostringstream os;
  explicit Fail(int c) : code(c) {}
  template <class T>
  Fail& operator<<(const T& v) {
    os << v;
    return *this;
  }
  operator int() {
    set_error(os.str());
    return code;
  }
};
}  // namespace st
