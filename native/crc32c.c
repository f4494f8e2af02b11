/* CRC-32C (Castagnoli), the checksum of Kafka's record batches (issue 9).
 *
 * crc32c(buf, start, end, seed) -> crc of buf[start, end) continuing from
 * seed (0 to start), or a negative errno for a bad range. Kafka validates
 * every produced batch with it, so it sits on the produce path: x86-64 uses
 * the SSE4.2 crc32 instruction (8 bytes per instruction) when the CPU has it,
 * chosen once at load with __builtin_cpu_supports; everything else uses a
 * slicing-by-8 table (8 bytes per step, about 1-2 GB/s).
 *
 * Like the other native files this is a shim: the TS layer validates the
 * arguments; the range check here only keeps a TS bug from reading out of
 * bounds. */
#include "zcopy.h"

#include <errno.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define ZC_CRC_HW 1
#endif

/* Reflected polynomial of CRC-32C. */
#define ZC_CRC32C_POLY 0x82F63B78u

static uint32_t zc__crc_table[8][256];

static void zc__crc_init_table(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (ZC_CRC32C_POLY & (0u - (c & 1)));
    zc__crc_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = zc__crc_table[0][i];
    for (int t = 1; t < 8; t++) {
      c = zc__crc_table[0][c & 0xff] ^ (c >> 8);
      zc__crc_table[t][i] = c;
    }
  }
}

/* Slicing-by-8 over the inverted crc (the caller inverts). The 8-byte loads
 * go through memcpy: no alignment assumption, and the compiler emits one
 * load. Little-endian layout is assumed for the word path; big-endian
 * machines take the byte loop. */
static uint32_t zc__crc_sw(uint32_t crc, const uint8_t* p, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    w ^= crc;
    crc = zc__crc_table[7][w & 0xff] ^ zc__crc_table[6][(w >> 8) & 0xff] ^
          zc__crc_table[5][(w >> 16) & 0xff] ^
          zc__crc_table[4][(w >> 24) & 0xff] ^
          zc__crc_table[3][(w >> 32) & 0xff] ^
          zc__crc_table[2][(w >> 40) & 0xff] ^
          zc__crc_table[1][(w >> 48) & 0xff] ^ zc__crc_table[0][w >> 56];
    p += 8;
    n -= 8;
  }
#endif
  while (n--) crc = zc__crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#ifdef ZC_CRC_HW
/* Compiled for SSE4.2 through the target attribute only, so the rest of the
 * addon still runs on CPUs without it; called only when the CPU has it. */
__attribute__((target("sse4.2"))) static uint32_t zc__crc_hw(uint32_t crc,
                                                               const uint8_t* p,
                                                               size_t n) {
  uint64_t c = crc;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c = _mm_crc32_u64(c, w);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = (uint32_t)c;
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}
#endif

static uint32_t (*zc__crc_impl)(uint32_t, const uint8_t*, size_t) = zc__crc_sw;

/* crc32c(buf, start, end, seed) -> crc (uint32) | -EINVAL */
static napi_value zc_crc32c(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  void* data;
  size_t len;
  if (zc__arg_buf(env, argv[0], &data, &len) != 0) return NULL;
  ZC_I64(1, start);
  ZC_I64(2, end);
  ZC_I64(3, seed);
  if (start < 0 || end < start || (uint64_t)end > len || seed < 0 ||
      seed > 0xffffffffLL)
    return zc__num(env, -EINVAL);
  uint32_t crc = ~(uint32_t)seed;
  crc = zc__crc_impl(crc, (const uint8_t*)data + start, (size_t)(end - start));
  return zc__num(env, (double)(uint32_t)~crc);
}

/* crc32cTable(buf, start, end, seed): the same through the table routine
 * whatever the CPU, so tests prove both routines on one machine. */
static napi_value zc_crc32c_table(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  void* data;
  size_t len;
  if (zc__arg_buf(env, argv[0], &data, &len) != 0) return NULL;
  ZC_I64(1, start);
  ZC_I64(2, end);
  ZC_I64(3, seed);
  if (start < 0 || end < start || (uint64_t)end > len || seed < 0 ||
      seed > 0xffffffffLL)
    return zc__num(env, -EINVAL);
  uint32_t crc = ~(uint32_t)seed;
  crc = zc__crc_sw(crc, (const uint8_t*)data + start, (size_t)(end - start));
  return zc__num(env, (double)(uint32_t)~crc);
}

/* crc32cImpl() -> "sse4.2" | "table": which routine crc32c uses. */
static napi_value zc_crc32c_impl(napi_env env, napi_callback_info info) {
  napi_value r;
  const char* name = zc__crc_impl == zc__crc_sw ? "table" : "sse4.2";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &r);
  return r;
}

napi_status zc__init_crc32c(napi_env env, napi_value exports) {
  zc__crc_init_table();
#ifdef ZC_CRC_HW
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) zc__crc_impl = zc__crc_hw;
#endif
  napi_status s = zc__export(env, exports, "crc32c", zc_crc32c);
  if (s == napi_ok) s = zc__export(env, exports, "crc32cTable", zc_crc32c_table);
  if (s != napi_ok) return s;
  return zc__export(env, exports, "crc32cImpl", zc_crc32c_impl);
}
