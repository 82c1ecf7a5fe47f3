/* A task that writes its memory fast while it is being migrated, and checks it itself.
 *
 * usage: t_writer MIB MB_PER_S [dontneed] [fork] [remap]
 * It holds MIB of memory; page p holds a pattern of (p, version). Step s rewrites page
 * s % npages with version s / npages + 1, at MB_PER_S (in bursts every 10 ms). With "dontneed",
 * every 16th step drops its page instead (MADV_DONTNEED: it must read as zero afterwards).
 * With "fork", every 200 ms it forks a child that checks the memory it inherited and exits
 * (status 0 when intact), which the parent waits for. With "remap", every millisecond it unmaps
 * the oldest of four small regions and maps a new one with a pattern of its own: its layout
 * changes all the time (the check covers those regions too).
 * It prints "line N" every 100 ms. On SIGUSR2 it checks every page against its step counter and
 * exits 0 when all is intact (the check covers memory and counters moving together). */
#include "target.h"

#include <sys/wait.h>
#include <time.h>

#define PAGE 4096UL

static char* mem;
static unsigned char* dropped; /* 1: the page was dropped and not written since */
static size_t npages;
static unsigned long steps;

static void write_page(size_t p, unsigned long version) {
  uint64_t* w = (uint64_t*)(mem + p * PAGE);
  for (size_t i = 0; i < PAGE / 8; i++) w[i] = (p << 32) ^ (version * 0x9e3779b97f4a7c15ULL) ^ i;
}

static int page_ok(size_t p, unsigned long version) {
  const uint64_t* w = (const uint64_t*)(mem + p * PAGE);
  if (dropped[p]) {
    for (size_t i = 0; i < PAGE / 8; i++)
      if (w[i]) return 0;
    return 1;
  }
  for (size_t i = 0; i < PAGE / 8; i++)
    if (w[i] != ((p << 32) ^ (version * 0x9e3779b97f4a7c15ULL) ^ i)) return 0;
  return 1;
}

/* Version page p must have after `done` steps. */
static unsigned long version_of(size_t p, unsigned long done) {
  return done / npages + (p < done % npages ? 1 : 0);
}

#define SLOTS 4
static char* slot_mem[SLOTS];
static size_t slot_bytes[SLOTS];
static unsigned long slot_id[SLOTS];

/* Sizes and protections vary, so that the layout does not come back to the same shape soon. */
static void remap_one(unsigned long id) {
  int s = (int)(id % SLOTS);
  if (slot_mem[s]) munmap(slot_mem[s], slot_bytes[s]);
  slot_bytes[s] = (1 + id % 13) * PAGE;
  slot_mem[s] =
      mmap(NULL, slot_bytes[s], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (slot_mem[s] == MAP_FAILED) {
    slot_mem[s] = NULL;
    return;
  }
  slot_id[s] = id;
  for (size_t i = 0; i < slot_bytes[s] / 8; i++) ((uint64_t*)slot_mem[s])[i] = id * 1000003 + i;
  if (id % 2) mprotect(slot_mem[s], slot_bytes[s], PROT_READ);
}

static int slots_ok(void) {
  for (int s = 0; s < SLOTS; s++) {
    if (!slot_mem[s]) continue;
    for (size_t i = 0; i < slot_bytes[s] / 8; i++)
      if (((uint64_t*)slot_mem[s])[i] != slot_id[s] * 1000003 + i) {
        fprintf(stderr, "t_writer: remapped region %d differs\n", s);
        return 0;
      }
  }
  return 1;
}

static int check_all(void) {
  if (!slots_ok()) return 0;
  for (size_t p = 0; p < npages; p++)
    if (!page_ok(p, version_of(p, steps))) {
      fprintf(stderr, "t_writer: page %zu differs (step %lu)\n", p, steps);
      return 0;
    }
  return 1;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  size_t len = (size_t)atol(argv[1]) << 20;
  double rate = atof(argv[2]) * 1e6; /* bytes per second */
  int dontneed = 0, forks = 0, remap = 0;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "dontneed")) dontneed = 1;
    if (!strcmp(argv[i], "fork")) forks = 1;
    if (!strcmp(argv[i], "remap")) remap = 1;
  }
  unsigned long remaps = 0;
  target_install_go();
  setvbuf(stdout, NULL, _IOLBF, 0);
  npages = len / PAGE;
  mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  dropped = calloc(npages, 1);
  if (mem == MAP_FAILED || !dropped) return 3;
  for (size_t p = 0; p < npages; p++) write_page(p, 0);
  double start = now_s(), last_line = start, last_fork = start;
  unsigned long line = 0;
  while (!target_go) {
    double t = now_s();
    unsigned long want = (unsigned long)((t - start) * rate / PAGE);
    for (; steps < want && !target_go; steps++) {
      size_t p = steps % npages;
      if (dontneed && steps % 16 == 15) {
        madvise(mem + p * PAGE, PAGE, MADV_DONTNEED);
        dropped[p] = 1;
        /* The step still counts: what the page must hold is derived from `steps`. */
        continue;
      }
      dropped[p] = 0;
      write_page(p, steps / npages + 1);
    }
    if (t - last_line >= 0.1) {
      printf("line %lu\n", ++line);
      last_line = t;
    }
    if (forks && t - last_fork >= 0.2) {
      last_fork = t;
      pid_t c = fork();
      if (c == 0) _exit(check_all() ? 0 : 1);
      int st = 0;
      waitpid(c, &st, 0);
      CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a child saw different memory");
    }
    if (remap) remap_one(remaps++);
    struct timespec ts = {0, (remap ? 1 : 10) * 1000000L};
    nanosleep(&ts, NULL);
  }
  CHECK(check_all(), "memory differs");
  printf("steps %lu\n", steps);
  return target_finish();
}
