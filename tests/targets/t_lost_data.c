/* Data a restore must not lose (issue 9, class 0).
 *   t_lost_data fifo DIR      fd 3: the read end of FIFO DIR/f holding 64 KiB, its writer gone;
 *                             after the restore every byte reads back, then EOF
 *   t_lost_data hardlink DIR  fd 3: DIR/a opened, then unlinked while it is still DIR/b; after
 *                             the restore a write through fd 3 reaches DIR/b (the same inode) */
#include "target.h"

#define QUEUED 65536

static void pattern(char* b, size_t n) {
  for (size_t i = 0; i < n; i++) b[i] = (char)(i * 7 + 3);
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  char path[4096], other[4096];
  int fifo = strcmp(argv[1], "fifo") == 0;
  target_install_go();
  if (fifo) {
    snprintf(path, sizeof path, "%s/f", argv[2]);
    if (mkfifo(path, 0600) != 0) return 3;
    int w = open(path, O_RDWR);
    int r = open(path, O_RDONLY | O_NONBLOCK);
    static char buf[QUEUED];
    pattern(buf, QUEUED);
    if (w < 0 || r < 0 || write(w, buf, QUEUED) != QUEUED) return 4;
    close(w); /* the writer is gone: what is queued is all there will be */
    if (r != 3 && (dup2(r, 3) != 3 || close(r) != 0)) return 5;
  } else {
    snprintf(path, sizeof path, "%s/a", argv[2]);
    snprintf(other, sizeof other, "%s/b", argv[2]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, "one", 3) != 3 || link(path, other) != 0 || dup2(fd, 3) != 3)
      return 4;
    if (fd != 3) close(fd);
    if (unlink(path) != 0) return 5;
  }
  target_ready();
  target_wait_go();
  if (fifo) {
    static char got[QUEUED + 1], want[QUEUED];
    pattern(want, QUEUED);
    size_t have = 0;
    for (;;) {
      ssize_t n = read(3, got + have, sizeof got - have);
      if (n <= 0) {
        CHECK(n == 0, "the FIFO did not end with EOF: %s", n < 0 ? strerror(errno) : "");
        break;
      }
      have += (size_t)n;
    }
    CHECK(have == QUEUED, "read %zu of %d queued bytes", have, QUEUED);
    CHECK(memcmp(got, want, QUEUED) == 0, "the queued bytes differ");
  } else {
    CHECK(pwrite(3, "two", 3, 0) == 3, "write: %s", strerror(errno));
    char buf[8] = {0};
    int b = open(other, O_RDONLY);
    CHECK(b >= 0 && read(b, buf, 3) == 3, "cannot read %s", other);
    CHECK(memcmp(buf, "two", 3) == 0, "%s holds '%s': fd 3 is not that file any more", other, buf);
    struct stat s3, sb;
    CHECK(fstat(3, &s3) == 0 && stat(other, &sb) == 0 && s3.st_ino == sb.st_ino,
          "fd 3 is another inode than %s", other);
  }
  return target_finish();
}
