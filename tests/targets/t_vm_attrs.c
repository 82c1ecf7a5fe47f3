/* Memory regions with attributes of their own (issue 9, classes 4 and 10).
 *   t_vm_attrs droppable      a MAP_DROPPABLE region holding a pattern: still droppable ("dp"),
 *                             and (not dropped under no pressure) still holding it
 *   t_vm_attrs guard          guard pages installed in the middle of a region: touching them
 *                             still faults, the pages around them keep their data
 *   t_vm_attrs shm-past-end PATH
 *                             a private mapping of PATH (made, 1 page, in /dev/shm) that reaches 3
 * pages (legitimate: the pages past the end raise SIGBUS when touched) t_vm_attrs fork-advice    a
 * MADV_DONTFORK region and a MADV_WIPEONFORK region, each holding a pattern: a fork copy lacks the
 * first and sees the second zeroed, so a snapshot must not read them from one */
#include "target.h"

#include <setjmp.h>

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define PAGE 4096

static sigjmp_buf fault_jump;
static volatile int faulted_with;

static void on_fault(int sig) {
  faulted_with = sig;
  siglongjmp(fault_jump, 1);
}

/* The signal touching addr raises (0: none). */
static int touch(volatile char* addr) {
  faulted_with = 0;
  if (sigsetjmp(fault_jump, 1) == 0) (void)*addr;
  return faulted_with;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* mode = argv[1];
  char* region = NULL;
  char* wiped = NULL;
  char path[4096] = "";
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_fault;
  sa.sa_flags = SA_NODEFER;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
  target_install_go();
  if (!strcmp(mode, "droppable")) {
    region = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) return 77; /* not on this kernel */
    fill_pattern(region, 4 * PAGE, 11);
    if (!region_has_flag(region, "dp")) return 4;
  } else if (!strcmp(mode, "guard")) {
    region = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) return 4;
    fill_pattern(region, 8 * PAGE, 12);
    if (madvise(region + 3 * PAGE, 2 * PAGE, MADV_GUARD_INSTALL) != 0) return 77;
    if (touch(region + 3 * PAGE) != SIGSEGV) return 5;
  } else if (!strcmp(mode, "shm-past-end") && argc >= 3) {
    snprintf(path, sizeof path, "%s", argv[2]);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, PAGE) != 0) return 4;
    region = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (region == MAP_FAILED) return 5;
    memcpy(region, "shm-page", 8);
    if (touch(region + PAGE) != SIGBUS) return 6;
  } else if (!strcmp(mode, "fork-advice")) {
    region = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    wiped = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED || wiped == MAP_FAILED) return 4;
    if (madvise(region, 4 * PAGE, MADV_DONTFORK) != 0) return 5;
    if (madvise(wiped, 4 * PAGE, MADV_WIPEONFORK) != 0) return 77;
    fill_pattern(region, 4 * PAGE, 13);
    fill_pattern(wiped, 4 * PAGE, 14);
  } else {
    return 2;
  }
  target_ready();
  target_wait_go();
  if (!strcmp(mode, "droppable")) {
    CHECK(region_has_flag(region, "dp"), "the region is not droppable any more");
    CHECK(check_pattern(region, 4 * PAGE, 11), "the droppable region lost its content");
  } else if (!strcmp(mode, "guard")) {
    CHECK(touch(region + 3 * PAGE) == SIGSEGV, "the first guard page does not fault");
    CHECK(touch(region + 4 * PAGE) == SIGSEGV, "the second guard page does not fault");
    CHECK(check_pattern(region, 3 * PAGE, 12), "the pages before the guards changed");
    char all[8 * PAGE];
    fill_pattern(all, sizeof all, 12);
    CHECK(memcmp(region + 5 * PAGE, all + 5 * PAGE, 3 * PAGE) == 0,
          "the pages after the guards changed");
  } else if (!strcmp(mode, "fork-advice")) {
    CHECK(region_has_flag(region, "dc"), "the MADV_DONTFORK advice was lost");
    CHECK(region_has_flag(wiped, "wf"), "the MADV_WIPEONFORK advice was lost");
    CHECK(check_pattern(region, 4 * PAGE, 13), "the MADV_DONTFORK region lost its content");
    CHECK(check_pattern(wiped, 4 * PAGE, 14), "the MADV_WIPEONFORK region lost its content");
  } else {
    CHECK(memcmp(region, "shm-page", 8) == 0, "the private page lost its content");
    CHECK(touch(region + PAGE) == SIGBUS, "the page past the end does not raise SIGBUS");
    CHECK(touch(region + 2 * PAGE) == SIGBUS, "the last page does not raise SIGBUS");
  }
  return target_finish();
}
