#include "errors.h"

#include "../include/st_kernels.h"

namespace st {
namespace {
thread_local std::string g_error;
}
void set_error(const std::string& msg) { g_error = msg; }
void clear_error() { g_error.clear(); }
}  // namespace st

extern "C" const char* st_last_error(void) { return st::g_error.c_str(); }
