/* Open files whose name is gone (issue 9, classes 7, 8 and 10).
 *   t_gone_files devnode DIR  fd 3: DIR/null, a node for 1:3 (/dev/null), deleted after open
 *   t_gone_files pty-gone     fd 3: a pseudo-terminal slave whose master was closed (hung up)
 *   t_gone_files fifo DIR     an unlinked FIFO open for reading (fd 3, 5 bytes queued), for
 *                             writing (fd 4), and both (fd 5, another FIFO)
 *   t_gone_files dir DIR      fd 3: DIR/d, removed after it was opened
 *   t_gone_files nsfd         fds 3-5: /proc/self/ns/{net,mnt,uts} */
#include "target.h"

#include <dirent.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>

#define NSFS_MAGIC_NUMBER 0x6e736673

static int at(int fd, int want) {
  if (fd < 0) return -1;
  if (fd == want) return 0;
  if (dup2(fd, want) != want) return -1;
  close(fd);
  return 0;
}

static ino_t ns_inode(const char* type) {
  char p[64];
  struct stat st;
  snprintf(p, sizeof p, "/proc/self/ns/%s", type);
  return stat(p, &st) == 0 ? st.st_ino : 0;
}

static const char* kNs[] = {"net", "mnt", "uts"};

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const char* mode = argv[1];
  char path[4096], path2[4096];
  target_install_go();
  if (!strcmp(mode, "devnode") && argc >= 3) {
    snprintf(path, sizeof path, "%s/null", argv[2]);
    if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) != 0) return 4;
    if (at(open(path, O_RDWR), 3) != 0 || unlink(path) != 0) return 5;
  } else if (!strcmp(mode, "pty-gone")) {
    int m = fcntl(posix_openpt(O_RDWR | O_NOCTTY), F_DUPFD, 10); /* off fd 3 */
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) return 4;
    if (at(open(ptsname(m), O_RDWR | O_NOCTTY), 3) != 0) return 5;
    close(m);
  } else if (!strcmp(mode, "fifo") && argc >= 3) {
    snprintf(path, sizeof path, "%s/f", argv[2]);
    snprintf(path2, sizeof path2, "%s/g", argv[2]);
    if (mkfifo(path, 0600) != 0 || mkfifo(path2, 0600) != 0) return 4;
    if (at(open(path, O_RDONLY | O_NONBLOCK), 3) != 0 || at(open(path, O_WRONLY), 4) != 0 ||
        at(open(path2, O_RDWR), 5) != 0)
      return 5;
    if (write(4, "hello", 5) != 5 || unlink(path) != 0 || unlink(path2) != 0) return 6;
  } else if (!strcmp(mode, "dir") && argc >= 3) {
    snprintf(path, sizeof path, "%s/d", argv[2]);
    if (mkdir(path, 0750) != 0 || at(open(path, O_RDONLY | O_DIRECTORY), 3) != 0 ||
        rmdir(path) != 0)
      return 4;
  } else if (!strcmp(mode, "nsfd")) {
    for (int i = 0; i < 3; i++) {
      snprintf(path, sizeof path, "/proc/self/ns/%s", kNs[i]);
      if (at(open(path, O_RDONLY), 3 + i) != 0) return 4;
    }
  } else {
    return 2;
  }
  target_ready();
  target_wait_go();
  struct stat st;
  CHECK(fstat(3, &st) == 0, "fstat: %s", strerror(errno));
  if (!strcmp(mode, "devnode")) {
    CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3,
          "fd 3 is not /dev/null's device");
    CHECK(write(3, "x", 1) == 1, "write to the null device: %s", strerror(errno));
    char c;
    CHECK(read(3, &c, 1) == 0, "the null device did not read as empty");
  } else if (!strcmp(mode, "pty-gone")) {
    CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) >= 136 && major(st.st_rdev) <= 143,
          "fd 3 is not a pseudo-terminal slave");
    CHECK(write(3, "x", 1) < 0 && errno == EIO, "writing to a hung-up terminal did not fail EIO");
  } else if (!strcmp(mode, "fifo")) {
    CHECK(S_ISFIFO(st.st_mode), "fd 3 is not a FIFO");
    struct stat s4, s5;
    CHECK(fstat(4, &s4) == 0 && s4.st_ino == st.st_ino, "fds 3 and 4 are not one FIFO");
    CHECK(fstat(5, &s5) == 0 && S_ISFIFO(s5.st_mode) && s5.st_ino != st.st_ino,
          "fd 5 is not a FIFO of its own");
    char buf[8] = {0};
    CHECK(read(3, buf, sizeof buf) == 5 && !memcmp(buf, "hello", 5), "queued bytes: '%s'", buf);
    CHECK(write(4, "again", 5) == 5 && read(3, buf, sizeof buf) == 5 && !memcmp(buf, "again", 5),
          "fd 4 does not write to fd 3's FIFO");
    CHECK(write(5, "rw", 2) == 2 && read(5, buf, sizeof buf) == 2, "fd 5 does not loop back");
    CHECK((fcntl(3, F_GETFL) & O_ACCMODE) == O_RDONLY && (fcntl(4, F_GETFL) & O_ACCMODE) ==
          O_WRONLY && (fcntl(5, F_GETFL) & O_ACCMODE) == O_RDWR, "access modes changed");
  } else if (!strcmp(mode, "dir")) {
    CHECK(S_ISDIR(st.st_mode), "fd 3 is not a directory");
    CHECK((st.st_mode & 07777) == 0750, "mode %o", st.st_mode & 07777);
    CHECK(openat(3, "x", O_RDWR | O_CREAT, 0600) < 0 && errno == ENOENT,
          "a file could be made in a removed directory");
  } else {
    for (int i = 0; i < 3; i++) {
      struct stat ns;
      struct statfs fs;
      CHECK(fstat(3 + i, &ns) == 0 && ns.st_ino == ns_inode(kNs[i]), "fd %d is not our %s namespace",
            3 + i, kNs[i]);
      CHECK(fstatfs(3 + i, &fs) == 0 && fs.f_type == NSFS_MAGIC_NUMBER, "fd %d is not on nsfs",
            3 + i);
    }
  }
  return target_finish();
}
