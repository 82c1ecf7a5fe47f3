/* A task doing file I/O while it is being migrated.
 *
 * usage: t_fileio DIR
 * It appends numbered records to DIR/records through one descriptor and reads them back through
 * another (its own offset), checking each one, every few milliseconds; now and then it checks an
 * earlier record with pread. It prints "line N" every 100 ms. On SIGUSR2 it reads what is left,
 * checks that every record written was read back once, in order, and that the file has exactly
 * the records written, then exits 0 ("OK"). */
#include "target.h"

#include <fcntl.h>
#include <time.h>

#define REC 64

static void record(unsigned long n, char* out) {
  memset(out, ' ', REC);
  int k =
      snprintf(out, REC, "record %012lu sum %016lx", n, (unsigned long)(n * 0x9e3779b97f4a7c15ULL));
  out[k] = ' ';
  out[REC - 1] = '\n';
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  char path[4096];
  snprintf(path, sizeof path, "%s/records", argv[1]);
  target_install_go();
  setvbuf(stdout, NULL, _IOLBF, 0);
  int w = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
  int r = open(path, O_RDONLY);
  if (w < 0 || r < 0) return 3;
  unsigned long written = 0, read_back = 0, line = 0;
  char buf[REC], want[REC];
  double last_line = now_s();
  while (!target_go) {
    for (int i = 0; i < 16; i++) {
      record(++written, buf);
      CHECK(write(w, buf, REC) == REC, "short write");
    }
    while (read_back < written) {
      ssize_t n = read(r, buf, REC);
      if (n != REC) break;
      record(++read_back, want);
      CHECK(!memcmp(buf, want, REC), "record %lu read back differs", read_back);
    }
    if (written > 100) {
      unsigned long k = written / 2;
      CHECK(pread(r, buf, REC, (off_t)(k - 1) * REC) == REC, "pread");
      record(k, want);
      CHECK(!memcmp(buf, want, REC), "record %lu (pread) differs", k);
    }
    if (now_s() - last_line >= 0.1) {
      printf("line %lu\n", ++line);
      last_line = now_s();
    }
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
  }
  while (read(r, buf, REC) == REC) {
    record(++read_back, want);
    CHECK(!memcmp(buf, want, REC), "record %lu read back differs", read_back);
  }
  CHECK(read_back == written, "wrote %lu records, read back %lu", written, read_back);
  CHECK(lseek(w, 0, SEEK_END) == (off_t)(written * REC), "the file has %ld bytes, want %lu",
        (long)lseek(w, 0, SEEK_END), written * REC);
  printf("records %lu\n", written);
  return target_finish();
}
