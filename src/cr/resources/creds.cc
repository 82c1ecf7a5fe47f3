#include "cr/resources/creds.h"

#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <vector>

#include "cr/dump_context.h"
#include "cr/restorer.h"
#include "util/error.h"
#include "util/proc.h"

namespace ferry::cr {
namespace {

constexpr int kLastCap = 40;

std::vector<uint32_t> parse_ids(const std::string& s) {
  std::vector<uint32_t> ids;
  for (auto& f : proc::split_ws(s)) ids.push_back(static_cast<uint32_t>(proc::parse_u64(f)));
  return ids;
}

}  // namespace

image::Credentials dump_ids(pid_t pid) {
  auto st = proc::read_keyed(proc::path(pid, "status"));
  image::Credentials c;
  for (uint32_t id : parse_ids(st.at("Uid"))) c.add_uids(id);
  for (uint32_t id : parse_ids(st.at("Gid"))) c.add_gids(id);
  for (uint32_t id : parse_ids(st["Groups"])) c.add_groups(id);
  if (c.uids_size() != 4 || c.gids_size() != 4) fail("cannot read the ids of process {}", pid);
  return c;
}

image::Credentials dump_creds(DumpContext& ctx) {
  auto st = proc::read_keyed(proc::path(ctx.pid(), "status"));
  image::Credentials c = dump_ids(ctx.pid());
  c.set_cap_inheritable(proc::parse_u64(st.at("CapInh"), 16));
  c.set_cap_permitted(proc::parse_u64(st.at("CapPrm"), 16));
  c.set_cap_effective(proc::parse_u64(st.at("CapEff"), 16));
  c.set_cap_bounding(proc::parse_u64(st.at("CapBnd"), 16));
  c.set_cap_ambient(proc::parse_u64(st.at("CapAmb"), 16));
  c.set_no_new_privs(proc::parse_u64(st.at("NoNewPrivs")) != 0);
  Tracee& t = ctx.tracee();
  c.set_securebits(static_cast<uint32_t>(
      t.syscall_checked("prctl(PR_GET_SECUREBITS)", SYS_prctl, {PR_GET_SECUREBITS})));
  c.set_dumpable(static_cast<int32_t>(
      t.syscall_checked("prctl(PR_GET_DUMPABLE)", SYS_prctl, {PR_GET_DUMPABLE})));
  return c;
}

void restore_creds(Restorer& r, const image::Credentials& c) {
  Tracee& t = r.tracee();
  // 1. While root with every capability: shrink the bounding set, set the groups and gids.
  for (int cap = 0; cap <= kLastCap; cap++)
    if (!(c.cap_bounding() >> cap & 1))
      t.syscall_checked("prctl(PR_CAPBSET_DROP)", SYS_prctl, {PR_CAPBSET_DROP, cap});
  r.reset_stage();
  std::vector<uint32_t> groups(c.groups().begin(), c.groups().end());
  uint64_t g = groups.empty() ? 0 : r.stage(groups.data(), groups.size() * sizeof(uint32_t));
  t.syscall_checked("setgroups", SYS_setgroups,
                    {static_cast<long>(groups.size()), static_cast<long>(g)});
  t.syscall_checked("setresgid", SYS_setresgid, {c.gids(0), c.gids(1), c.gids(2)});
  t.syscall(SYS_setfsgid, {c.gids(3)});
  // 2. Keep the permitted set across the uid change; the exact sets come right after.
  uint32_t bits = c.securebits() & ~(SECBIT_KEEP_CAPS_LOCKED);
  t.syscall_checked("prctl(PR_SET_SECUREBITS)", SYS_prctl,
                    {PR_SET_SECUREBITS, bits | SECBIT_KEEP_CAPS});
  t.syscall_checked("setresuid", SYS_setresuid, {c.uids(0), c.uids(1), c.uids(2)});
  t.syscall(SYS_setfsuid, {c.uids(3)});
  // 3. Exactly the image's capabilities.
  r.reset_stage();
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  data[0].effective = static_cast<uint32_t>(c.cap_effective());
  data[1].effective = static_cast<uint32_t>(c.cap_effective() >> 32);
  data[0].permitted = static_cast<uint32_t>(c.cap_permitted());
  data[1].permitted = static_cast<uint32_t>(c.cap_permitted() >> 32);
  data[0].inheritable = static_cast<uint32_t>(c.cap_inheritable());
  data[1].inheritable = static_cast<uint32_t>(c.cap_inheritable() >> 32);
  uint64_t h = r.stage(&hdr, sizeof hdr);
  uint64_t d = r.stage(data, sizeof data);
  t.syscall_checked("capset", SYS_capset, {static_cast<long>(h), static_cast<long>(d)});
  t.syscall_checked("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", SYS_prctl,
                    {PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0});
  for (int cap = 0; cap <= kLastCap; cap++)
    if (c.cap_ambient() >> cap & 1)
      t.syscall_checked("prctl(PR_CAP_AMBIENT_RAISE)", SYS_prctl,
                        {PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0});
  // 4. KEEP_CAPS as it was (changing it needs no privilege), then the lock if there was one.
  t.syscall_checked("prctl(PR_SET_KEEPCAPS)", SYS_prctl,
                    {PR_SET_KEEPCAPS, (c.securebits() & SECBIT_KEEP_CAPS) ? 1 : 0});
  if (c.securebits() & SECBIT_KEEP_CAPS_LOCKED)
    t.syscall_checked("prctl(PR_SET_SECUREBITS)", SYS_prctl,
                      {PR_SET_SECUREBITS, static_cast<long>(c.securebits())});
  // 5. A uid change resets dumpable; no_new_privs is one-way and comes last.
  t.syscall_checked("prctl(PR_SET_DUMPABLE)", SYS_prctl,
                    {PR_SET_DUMPABLE, c.dumpable() == 1 ? 1 : 0});
  if (c.no_new_privs())
    t.syscall_checked("prctl(PR_SET_NO_NEW_PRIVS)", SYS_prctl, {PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0});
}

}  // namespace ferry::cr
