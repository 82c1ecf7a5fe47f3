/* N MiB of patterned anonymous memory, checked after the restore. usage: t_bigmem MIB */
#include "target.h"

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  size_t len = (size_t)atol(argv[1]) << 20;
  target_install_go();
  char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  fill_pattern(m, len, 99);
  target_ready();
  target_wait_go();
  CHECK(check_pattern(m, len, 99), "memory differs");
  return target_finish();
}
