/* Platforms other than Linux: the addon loads but offers no syscalls, so the
 * TypeScript layer takes the portable path and says why in capabilities(). */
#include "zcopy.h"

napi_status zc__init_io(napi_env env, napi_value exports) { return napi_ok; }
napi_status zc__init_poll(napi_env env, napi_value exports) { return napi_ok; }
napi_status zc__init_file(napi_env env, napi_value exports) { return napi_ok; }
napi_status zc__init_splice(napi_env env, napi_value exports) {
  return napi_ok;
}
napi_status zc__init_mmap(napi_env env, napi_value exports) { return napi_ok; }
napi_status zc__init_receive(napi_env env, napi_value exports) {
  return napi_ok;
}
napi_status zc__init_bench(napi_env env, napi_value exports) { return napi_ok; }
