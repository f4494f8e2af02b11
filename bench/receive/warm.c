/* Touches BYTES of anonymous memory and frees it. Run by bench/receive
 * before every measured run: on a VM with free page reporting
 * (virtio-balloon, Linux page_reporting) the host takes back guest pages
 * that stay free a couple of seconds, and the next writer of fresh page
 * cache pays a host fault on every page it allocates from them. Measured
 * here: `dd bs=1M` of 1 GiB into a new file took 0.18 s after this step and
 * 1.1-2.9 s without it, whichever program was writing. Without the step
 * the receivers' figures said which one the allocator happened to give
 * reported pages to, not how fast it receives. Usage: warm BYTES */
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  size_t n = (size_t)atoll(argv[1]);
  char* p = mmap(NULL, n, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 1;
  /* Huge pages where allowed: the page cache allocates large folios from
   * the same high-order free blocks that page reporting hands back. */
  madvise(p, n, MADV_HUGEPAGE);
  for (size_t i = 0; i < n; i += 4096) p[i] = 1;
  munmap(p, n);
  return 0;
}
