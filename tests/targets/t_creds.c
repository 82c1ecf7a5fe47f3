/* Credentials: a process that dropped root (uids 1000/1001/1002, gids, groups, a small set of
 * capabilities, an ambient capability, a trimmed bounding set, no_new_privs) comes back exactly
 * like that, and cannot regain root. */
#include "target.h"

#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>

#define BIT(c) (1u << (c))

int main(void) {
  target_install_go();
  gid_t groups[2] = {100, 200};
  if (setgroups(2, groups)) return 3;
  prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN);
  prctl(PR_SET_KEEPCAPS, 1);
  if (setresgid(1000, 1001, 1002) || setresuid(1000, 1001, 1002)) return 3;
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct d[2] = {{0}};
  d[0].permitted = BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_KILL);
  d[0].effective = BIT(CAP_NET_BIND_SERVICE);
  d[0].inheritable = BIT(CAP_KILL);
  if (syscall(SYS_capset, &h, d)) return 3;
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_KILL, 0, 0);
  prctl(PR_SET_KEEPCAPS, 0);
  prctl(PR_SET_DUMPABLE, 1);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);

  target_ready();
  target_wait_go();

  uid_t ru, eu, su;
  gid_t rg, eg, sg;
  getresuid(&ru, &eu, &su);
  getresgid(&rg, &eg, &sg);
  CHECK(ru == 1000 && eu == 1001 && su == 1002, "uids %u/%u/%u", ru, eu, su);
  CHECK(rg == 1000 && eg == 1001 && sg == 1002, "gids %u/%u/%u", rg, eg, sg);
  gid_t now[8];
  int n = getgroups(8, now);
  CHECK(n == 2 && now[0] == 100 && now[1] == 200, "groups differ (%d)", n);
  struct __user_cap_data_struct c[2] = {{0}};
  syscall(SYS_capget, &h, c);
  CHECK(c[0].permitted == (BIT(CAP_NET_BIND_SERVICE) | BIT(CAP_KILL)) && c[1].permitted == 0, "permitted %#x", c[0].permitted);
  CHECK(c[0].effective == BIT(CAP_NET_BIND_SERVICE) && c[1].effective == 0, "effective %#x", c[0].effective);
  CHECK(c[0].inheritable == BIT(CAP_KILL), "inheritable %#x", c[0].inheritable);
  CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_KILL, 0, 0) == 1, "ambient CAP_KILL lost");
  CHECK(prctl(PR_CAPBSET_READ, CAP_SYS_ADMIN) == 0, "CAP_SYS_ADMIN back in the bounding set");
  CHECK(prctl(PR_CAPBSET_READ, CAP_NET_RAW) == 1, "CAP_NET_RAW dropped from the bounding set");
  CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs lost");
  CHECK(prctl(PR_GET_DUMPABLE) == 1, "dumpable is %d", prctl(PR_GET_DUMPABLE));
  CHECK(prctl(PR_GET_KEEPCAPS) == 0, "keepcaps is set");
  /* and no way back to root */
  CHECK(setuid(0) == -1 && errno == EPERM, "setuid(0) worked");
  CHECK(setresuid(0, 0, 0) == -1, "setresuid(0) worked");
  struct __user_cap_data_struct more[2] = {{0}};
  more[0].permitted = more[0].effective = BIT(CAP_SYS_ADMIN) | BIT(CAP_NET_BIND_SERVICE);
  CHECK(syscall(SYS_capset, &h, more) == -1, "capset gained CAP_SYS_ADMIN");
  CHECK(open("/etc/shadow", O_RDONLY) == -1 && errno == EACCES, "/etc/shadow readable");
  return target_finish();
}
