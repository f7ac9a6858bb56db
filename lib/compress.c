/* Grain compression: zlib-wrapped deflate (RFC 1950), as every
 * streamOptimized producer writes it.  libdeflate when built with it, else
 * zlib.  One codec per thread of use: a codec is not thread-safe. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#if defined(HAVE_LIBDEFLATE)
#include <libdeflate.h>
#elif defined(HAVE_ZLIB)
#include <zlib.h>
#else
#error "vmdkit needs libdeflate or zlib"
#endif

struct codec {
  int level;
#if defined(HAVE_LIBDEFLATE)
  struct libdeflate_compressor *c;
  struct libdeflate_decompressor *d;
#endif
};

struct codec *codec_new(int level) {
  struct codec *z = calloc(1, sizeof *z);
  if (!z) {
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  z->level = level;
#if defined(HAVE_LIBDEFLATE)
  z->d = libdeflate_alloc_decompressor();
  if (!z->d) {
    free(z);
    set_error(ENOMEM, "out of memory for a decompressor");
    return NULL;
  }
#endif
  return z;
}

void codec_free(struct codec *z) {
  if (!z)
    return;
#if defined(HAVE_LIBDEFLATE)
  libdeflate_free_compressor(z->c);
  libdeflate_free_decompressor(z->d);
#endif
  free(z);
}

size_t codec_bound(size_t n) {
  /* zlib's compressBound plus the wrapper, a safe bound for both. */
  return n + (n >> 12) + (n >> 14) + (n >> 25) + 64;
}

size_t codec_compress(struct codec *z, const void *in, size_t n, void *out,
                      size_t cap) {
#if defined(HAVE_LIBDEFLATE)
  if (!z->c && !(z->c = libdeflate_alloc_compressor(z->level)))
    return 0;
  return libdeflate_zlib_compress(z->c, in, n, out, cap);
#else
  uLongf len = cap;
  if (compress2(out, &len, in, n, z->level) != Z_OK)
    return 0;
  return len;
#endif
}

/* A zlib header: CM 8 (deflate), window <= 32 KiB, header checksum. */
static bool is_zlib(const uint8_t *p, size_t n) {
  return n >= 2 && (p[0] & 0x0f) == 8 && (p[0] >> 4) <= 7 &&
         ((unsigned)p[0] << 8 | p[1]) % 31 == 0;
}

int codec_decompress(struct codec *z, const void *in, size_t n, void *out,
                     size_t cap, size_t *actual) {
  bool zlib = is_zlib(in, n); /* else raw deflate, as the spec names it */
#if defined(HAVE_LIBDEFLATE)
  enum libdeflate_result r =
      zlib ? libdeflate_zlib_decompress(z->d, in, n, out, cap, actual)
           : libdeflate_deflate_decompress(z->d, in, n, out, cap, actual);
  if (r == LIBDEFLATE_INSUFFICIENT_SPACE)
    return -2;
  return r == LIBDEFLATE_SUCCESS ? 0 : -1;
#else
  (void)z;
  z_stream s = {0};
  s.next_in = (Bytef *)in;
  s.avail_in = (uInt)n;
  s.next_out = out;
  s.avail_out = (uInt)cap;
  if (inflateInit2(&s, zlib ? 15 : -15) != Z_OK)
    return -1;
  int r = inflate(&s, Z_FINISH);
  *actual = cap - s.avail_out;
  inflateEnd(&s);
  if (r == Z_BUF_ERROR && s.avail_out == 0)
    return -2;
  return r == Z_STREAM_END ? 0 : -1;
#endif
}
