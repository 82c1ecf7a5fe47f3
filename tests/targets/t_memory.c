/* Memory regions of every kind: private anonymous (with data, never touched, touched but zero),
 * read-only and PROT_NONE regions, shared anonymous memory seen through two mappings, private
 * file mappings with some pages written, a shared file mapping, MAP_GROWSDOWN, huge-page advice,
 * the heap (brk), and the vdso.  usage: t_memory DIR */
#include "target.h"

#include <setjmp.h>
#include <sys/auxv.h>
#include <time.h>

#define MB (1UL << 20)
#define PG 4096UL

static sigjmp_buf jump;
static void on_segv(int s) { (void)s; siglongjmp(jump, 1); }

static int faults_on_read(volatile char *p) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_segv;
  sigaction(SIGSEGV, &sa, &old);
  int faulted = 0;
  if (sigsetjmp(jump, 1)) faulted = 1;
  else (void)*p;
  sigaction(SIGSEGV, &old, NULL);
  return faulted;
}

static unsigned long vdso_start_in_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  char line[512];
  unsigned long s = 0, e;
  while (fgets(line, sizeof line, f))
    if (strstr(line, "[vdso]")) sscanf(line, "%lx-%lx", &s, &e);
  fclose(f);
  return s;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  char path[4096];
  target_install_go();

  /* private anonymous, 8 MiB of pattern */
  char *anon = mmap(NULL, 8 * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  fill_pattern(anon, 8 * MB, 1);
  /* never touched, and touched by reads only */
  char *untouched = mmap(NULL, 16 * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *readonly_touched = mmap(NULL, 1 * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  volatile char sink = 0;
  for (unsigned long i = 0; i < MB; i += PG) sink += readonly_touched[i];
  /* data, then read-only */
  char *ro = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  fill_pattern(ro, 4 * PG, 2);
  mprotect(ro, 4 * PG, PROT_READ);
  /* guard page in the middle of three */
  char *guarded = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  memset(guarded, 'g', 3 * PG);
  mprotect(guarded + PG, PG, PROT_NONE);
  /* shared anonymous memory, mapped a second time with mremap(old size 0) */
  char *shared = mmap(NULL, 2 * MB, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  fill_pattern(shared, 2 * MB, 3);
  char *shared2 = mremap(shared, 0, 2 * MB, MREMAP_MAYMOVE);
  /* private file mapping, pages 1 and 3 written */
  snprintf(path, sizeof path, "%s/private.dat", argv[1]);
  int pf = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  char *filebuf = malloc(8 * PG);
  fill_pattern(filebuf, 8 * PG, 4);
  if (write(pf, filebuf, 8 * PG) != (ssize_t)(8 * PG)) return 3;
  char *fpriv = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, pf, 0);
  memset(fpriv + 1 * PG, 'A', PG);
  memset(fpriv + 3 * PG + 100, 'B', 10);
  close(pf);
  /* shared file mapping */
  snprintf(path, sizeof path, "%s/shared.dat", argv[1]);
  int sf = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (ftruncate(sf, 4 * PG)) return 3;
  char *fshared = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, sf, 0);
  memcpy(fshared, "shared-before", 13);
  /* MAP_GROWSDOWN */
  char *grows = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
  memset(grows + 15 * PG, 'd', PG);
  /* huge page advice on a 2 MiB-aligned region */
  char *raw = mmap(NULL, 8 * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  char *huge = (char *)(((unsigned long)raw + 2 * MB - 1) & ~(2 * MB - 1));
  madvise(huge, 4 * MB, MADV_HUGEPAGE);
  fill_pattern(huge, 4 * MB, 5);
  char *nohuge = mmap(NULL, 2 * MB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  madvise(nohuge, 2 * MB, MADV_NOHUGEPAGE);
  nohuge[0] = 1;
  /* the heap */
  char *brk0 = sbrk(0);
  char *heap = sbrk(3 * PG);
  memset(heap, 'h', 3 * PG);
  void *brk1 = sbrk(0);
  unsigned long vdso = getauxval(AT_SYSINFO_EHDR);

  target_ready();
  target_wait_go();

  CHECK(check_pattern(anon, 8 * MB, 1), "private anonymous memory differs");
  int zero = 1;
  for (unsigned long i = 0; i < 16 * MB; i += 512) zero &= untouched[i] == 0;
  for (unsigned long i = 0; i < MB; i += 512) zero &= readonly_touched[i] == 0;
  CHECK(zero, "untouched memory is not zero");
  CHECK(check_pattern(ro, 4 * PG, 2), "read-only memory differs");
  CHECK(!strcmp(region_perms(ro), "r--p"), "read-only region has perms %s", region_perms(ro));
  CHECK(guarded[0] == 'g' && guarded[2 * PG] == 'g', "pages around the guard page differ");
  CHECK(!strcmp(region_perms(guarded + PG), "---p"), "guard page has perms %s", region_perms(guarded + PG));
  CHECK(faults_on_read(guarded + PG), "guard page does not fault");
  CHECK(check_pattern(shared, 2 * MB, 3), "shared anonymous memory differs");
  shared[12345] = 'Z';
  CHECK(shared2[12345] == 'Z', "the two views of shared memory are no longer shared");
  CHECK(!strcmp(region_perms(shared), "rw-s"), "shared region has perms %s", region_perms(shared));
  int fp_ok = 1;
  for (int p = 0; p < 8; p++) {
    if (p == 1) fp_ok &= fpriv[PG] == 'A' && fpriv[2 * PG - 1] == 'A';
    else if (p == 3) fp_ok &= !memcmp(fpriv + 3 * PG + 100, "BBBBBBBBBB", 10) && !memcmp(fpriv + 3 * PG, filebuf + 3 * PG, 100);
    else fp_ok &= !memcmp(fpriv + p * PG, filebuf + p * PG, PG);
  }
  CHECK(fp_ok, "private file mapping content differs");
  CHECK(!memcmp(fshared, "shared-before", 13), "shared file mapping content differs");
  memcpy(fshared + 100, "after", 5);
  char back[8] = {0};
  snprintf(path, sizeof path, "%s/shared.dat", argv[1]);
  int rf = open(path, O_RDONLY);
  CHECK(pread(rf, back, 5, 100) == 5 && !memcmp(back, "after", 5), "shared file mapping is no longer shared with the file");
  close(rf);
  CHECK(grows[15 * PG] == 'd', "MAP_GROWSDOWN content differs");
  CHECK(region_has_flag(grows + 15 * PG, "gd"), "MAP_GROWSDOWN flag lost");
  CHECK(check_pattern(huge, 4 * MB, 5), "huge page region differs");
  CHECK(region_has_flag(huge, "hg"), "MADV_HUGEPAGE advice lost");
  CHECK(region_has_flag(nohuge, "nh"), "MADV_NOHUGEPAGE advice lost");
  CHECK(sbrk(0) == brk1 && heap >= brk0, "brk moved: %p vs %p", sbrk(0), brk1);
  int heap_ok = 1;
  for (unsigned long i = 0; i < 3 * PG; i++) heap_ok &= heap[i] == 'h';
  CHECK(heap_ok, "heap content differs");
  CHECK(syscall(SYS_brk, 0) == (long)brk1, "kernel brk differs");
  CHECK(vdso == vdso_start_in_maps(), "vdso moved: auxv %#lx, maps %#lx", vdso, vdso_start_in_maps());
  struct timespec ts;
  CHECK(clock_gettime(CLOCK_MONOTONIC, &ts) == 0 && ts.tv_sec > 0, "clock_gettime through the vdso fails");
  (void)sink;
  return target_finish();
}
