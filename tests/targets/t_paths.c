/* Files named by path in an image, for the hostile-image tests.
 *   t_paths open DIR    keeps DIR/data (written "hello") open on fd 3
 *   t_paths ghost DIR   keeps an unlinked file DIR/prog of mode 04755 open on fd 3; after the
 *                       restore its copy must have no set-id bit and the same content */
#include "target.h"

static const char kContent[] = "#!/bin/sh\necho hello\n";

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  char path[4096];
  int ghost = strcmp(argv[1], "ghost") == 0;
  snprintf(path, sizeof path, "%s/%s", argv[2], ghost ? "prog" : "data");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || dup2(fd, 3) != 3) return 3;
  if (fd != 3) close(fd);
  if (write(3, kContent, sizeof kContent - 1) != (ssize_t)(sizeof kContent - 1)) return 4;
  if (ghost) {
    if (fchmod(3, 04755) != 0 || unlink(path) != 0) return 5;
  }
  target_install_go();
  target_ready();
  target_wait_go();
  char buf[64] = {0};
  CHECK(pread(3, buf, sizeof buf, 0) == (ssize_t)(sizeof kContent - 1), "short read");
  CHECK(memcmp(buf, kContent, sizeof kContent - 1) == 0, "content changed: %s", buf);
  struct stat st;
  CHECK(fstat(3, &st) == 0, "fstat");
  if (ghost) CHECK((st.st_mode & 06000) == 0, "set-id bits came back: %o", st.st_mode & 07777);
  return target_finish();
}
