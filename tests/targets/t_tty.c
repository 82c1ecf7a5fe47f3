/* A terminal on stdio: after the restore, fds 0-2 are a terminal again and writing to it works. */
#include "target.h"

#include <termios.h>

int main(void) {
  target_install_go();
  target_ready();
  target_wait_go();
  struct termios t;
  CHECK(isatty(0) && isatty(1) && isatty(2), "stdio is not a terminal");
  CHECK(tcgetattr(1, &t) == 0, "tcgetattr fails");
  if (!target_failures) {
    const char msg[] = "tty-ok\n";
    CHECK(write(1, msg, sizeof msg - 1) == (ssize_t)(sizeof msg - 1), "write to the terminal fails");
  }
  return target_failures ? 1 : 0;
}
