/*
 * Page-cache control for the benchmark's data file.
 *
 *   pagecache status FILE   prints {"resident":FRACTION}
 *   pagecache warm FILE     reads the file if any page is missing
 *   pagecache drop FILE     fdatasync + posix_fadvise(DONTNEED)
 *
 * Residency comes from mincore(2) over a read-only mapping, so checking a
 * warm 1 GiB file costs milliseconds instead of a full read.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

static double zcb__resident(int fd, off_t size) {
  if (size == 0) return 1.0;
  void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) zcb__die("mmap");
  long page = sysconf(_SC_PAGESIZE);
  size_t pages = (size + page - 1) / page;
  unsigned char *vec = malloc(pages);
  if (vec == NULL) zcb__die("malloc");
  if (mincore(map, size, vec) != 0) zcb__die("mincore");
  size_t in = 0;
  for (size_t i = 0; i < pages; i++) in += vec[i] & 1;
  free(vec);
  munmap(map, size);
  return (double) in / pages;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: pagecache status|warm|drop FILE\n");
    return 2;
  }
  int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
  if (fd < 0) zcb__die("open");
  struct stat st;
  if (fstat(fd, &st) != 0) zcb__die("fstat");
  if (strcmp(argv[1], "warm") == 0) {
    if (zcb__resident(fd, st.st_size) < 1.0) {
      static char buf[1 << 20];
      while (read(fd, buf, sizeof(buf)) > 0) {}
    }
  } else if (strcmp(argv[1], "drop") == 0) {
    /* DONTNEED only drops clean pages: write dirty ones back first. */
    if (fdatasync(fd) != 0 && errno != EINVAL) zcb__die("fdatasync");
    int err = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (err != 0) {
      errno = err;
      zcb__die("posix_fadvise");
    }
  } else if (strcmp(argv[1], "status") != 0) {
    fprintf(stderr, "unknown command: %s\n", argv[1]);
    return 2;
  }
  printf("{\"resident\":%.4f}\n", zcb__resident(fd, st.st_size));
  return 0;
}
