/* File-side syscalls: copy_file_range and FICLONE for copyFile, and the
 * page-cache probes that decide whether a transfer may run on the loop
 * thread (cached) or must go to the threadpool (it would wait for disk). */
#include "zcopy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef __NR_cachestat
# if defined(__x86_64__) || defined(__aarch64__) || defined(__i386__)
#  define __NR_cachestat 451
# endif
#endif

/* copy_file_range on the threadpool, looping over short counts until len is
 * copied or the source ends. a: in_fd, in_off, out_fd, out_off, len. */
static int64_t zc__cfr_job(const int64_t* a) {
  int64_t done = 0;
  while (done < a[4]) {
    loff_t in_off = a[1] + done, out_off = a[3] + done;
    int64_t want = a[4] - done;
    if (want > 0x7ffff000LL) want = 0x7ffff000LL;
    ssize_t n = copy_file_range((int)a[0], &in_off, (int)a[2], &out_off,
                                (size_t)want, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return done > 0 ? done : -errno;
    }
    if (n == 0) break;
    done += n;
  }
  return done;
}

/* copyFileRangeAsync(inFd, inOff, outFd, outOff, len, cb) */
static napi_value zc_cfr_async(napi_env env, napi_callback_info info) {
  ZC_ARGS(6);
  int64_t a[5];
  for (int i = 0; i < 5; i++)
    if (zc__arg_i64(env, argv[i], &a[i]) != 0) return NULL;
  return zc__queue_job(env, argv[5], zc__cfr_job, a, 5);
}

/* ioctl(FICLONE): share every extent of src with dest (reflink). */
static int64_t zc__ficlone_job(const int64_t* a) {
  return ioctl((int)a[1], FICLONE, (int)a[0]) < 0 ? -errno : 0;
}

/* ficloneAsync(srcFd, destFd, cb) */
static napi_value zc_ficlone_async(napi_env env, napi_callback_info info) {
  ZC_ARGS(3);
  int64_t a[2];
  for (int i = 0; i < 2; i++)
    if (zc__arg_i64(env, argv[i], &a[i]) != 0) return NULL;
  return zc__queue_job(env, argv[2], zc__ficlone_job, a, 2);
}

/* pread + pwrite between files on the threadpool, for filesystems that take
 * neither copy_file_range nor sendfile. a: in, in_off, out, out_off, len. */
static int64_t zc__rw_job(const int64_t* a) {
  enum { BUF = 1 << 20 };
  char* buf = malloc(BUF);
  if (buf == NULL) return -ENOMEM;
  int64_t done = 0, err = 0;
  while (done < a[4]) {
    size_t want = a[4] - done > BUF ? BUF : (size_t)(a[4] - done);
    ssize_t n = pread((int)a[0], buf, want, (off_t)(a[1] + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? -errno : 0;
      break;
    }
    ssize_t w = 0;
    while (w < n) {
      ssize_t m = pwrite((int)a[2], buf + w, (size_t)(n - w),
                         (off_t)(a[3] + done + w));
      if (m < 0 && errno == EINTR) continue;
      if (m < 0) {
        err = -errno;
        break;
      }
      w += m;
    }
    done += w;
    if (err != 0) break;
  }
  free(buf);
  return done > 0 ? done : err;
}

/* preadPwriteAsync(inFd, inOff, outFd, outOff, len, cb) */
static napi_value zc_rw_async(napi_env env, napi_callback_info info) {
  ZC_ARGS(6);
  int64_t a[5];
  for (int i = 0; i < 5; i++)
    if (zc__arg_i64(env, argv[i], &a[i]) != 0) return NULL;
  return zc__queue_job(env, argv[5], zc__rw_job, a, 5);
}

/* fadvise(fd, offset, len, advice) -> 0 | -errno. advice: 0 normal,
 * 1 random, 2 sequential, 3 willneed, 4 dontneed (POSIX_FADV_*). */
static napi_value zc_fadvise(napi_env env, napi_callback_info info) {
  ZC_ARGS(4);
  ZC_I32(0, fd);
  ZC_I64(1, off);
  ZC_I64(2, len);
  ZC_I32(3, advice);
  static const int map[] = {POSIX_FADV_NORMAL, POSIX_FADV_RANDOM,
                            POSIX_FADV_SEQUENTIAL, POSIX_FADV_WILLNEED,
                            POSIX_FADV_DONTNEED};
  if (advice < 0 || advice > 4) return zc__num(env, -EINVAL);
  int r = posix_fadvise(fd, (off_t)off, (off_t)len, map[advice]);
  return zc__num(env, -r);
}

struct zc__cachestat_range {
  uint64_t off;
  uint64_t len;
};

struct zc__cachestat {
  uint64_t nr_cache;
  uint64_t nr_dirty;
  uint64_t nr_writeback;
  uint64_t nr_evicted;
  uint64_t nr_recently_evicted;
};

/* The mincore fallback for kernels before 6.5: map the range (no I/O), ask
 * which pages are resident, unmap. */
static int64_t zc__uncached_mincore(int fd, int64_t off, int64_t len) {
  long page = sysconf(_SC_PAGESIZE);
  int64_t start = off & ~(int64_t)(page - 1);
  size_t span = (size_t)(off + len - start);
  void* m = mmap(NULL, span, PROT_READ, MAP_SHARED, fd, (off_t)start);
  if (m == MAP_FAILED) return -errno;
  size_t pages = (span + (size_t)page - 1) / (size_t)page;
  unsigned char* vec = malloc(pages);
  int64_t missing = -ENOMEM;
  if (vec != NULL) {
    if (mincore(m, span, vec) == 0) {
      missing = 0;
      for (size_t i = 0; i < pages; i++)
        if (!(vec[i] & 1)) missing++;
    } else {
      missing = -errno;
    }
    free(vec);
  }
  munmap(m, span);
  return missing;
}

/* Pages under readahead I/O are in the cache but not yet readable, and
 * cachestat/mincore count them as present. A 1-byte RWF_NOWAIT read of the
 * range's last byte says whether the tail would block (nginx does the same
 * before choosing a thread for sendfile). Returns 1 if it would block. */
static int zc__tail_would_block(int fd, int64_t off, int64_t len) {
#ifdef RWF_NOWAIT
  static int have_nowait = 1;
  if (!have_nowait) return 0;
  char byte;
  struct iovec iov = {&byte, 1};
  ssize_t r = preadv2(fd, &iov, 1, (off_t)(off + len - 1), RWF_NOWAIT);
  if (r < 0 && errno == EAGAIN) return 1;
  if (r < 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) have_nowait = 0;
#endif
  return 0;
}

/* uncachedPages(fd, offset, len) -> pages of the range not in the page
 * cache (0: a read would not wait for disk) | -errno. cachestat(2) where the
 * kernel has it (6.5+), else mincore over a temporary mapping; then the
 * RWF_NOWAIT probe of the tail for pages still being read. */
static napi_value zc_uncached_pages(napi_env env, napi_callback_info info) {
  ZC_ARGS(3);
  ZC_I32(0, fd);
  ZC_I64(1, off);
  ZC_I64(2, len);
  if (len <= 0) return zc__num(env, 0);
#ifdef __NR_cachestat
  static int have_cachestat = 1;
  if (have_cachestat) {
    struct zc__cachestat_range r = {(uint64_t)off, (uint64_t)len};
    struct zc__cachestat cs;
    if (syscall(__NR_cachestat, fd, &r, &cs, 0) == 0) {
      long page = sysconf(_SC_PAGESIZE);
      int64_t first = off / page, last = (off + len - 1) / page;
      int64_t total = last - first + 1;
      int64_t missing = total - (int64_t)cs.nr_cache;
      if (missing <= 0) missing = zc__tail_would_block(fd, off, len);
      return zc__num(env, (double)missing);
    }
    if (errno == ENOSYS) have_cachestat = 0;
    else if (errno != EOPNOTSUPP) return zc__num(env, -errno);
  }
#endif
  int64_t missing = zc__uncached_mincore(fd, off, len);
  if (missing == 0) missing = zc__tail_would_block(fd, off, len);
  return zc__num(env, (double)missing);
}

napi_status zc__init_file(napi_env env, napi_value exports) {
  napi_status s;
  if ((s = zc__export(env, exports, "copyFileRangeAsync", zc_cfr_async)) !=
          napi_ok ||
      (s = zc__export(env, exports, "ficloneAsync", zc_ficlone_async)) !=
          napi_ok ||
      (s = zc__export(env, exports, "preadPwriteAsync", zc_rw_async)) !=
          napi_ok ||
      (s = zc__export(env, exports, "fadvise", zc_fadvise)) != napi_ok ||
      (s = zc__export(env, exports, "uncachedPages", zc_uncached_pages)) !=
          napi_ok)
    return s;
  return napi_ok;
}
