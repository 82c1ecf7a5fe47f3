// The node's part in migrations: which session runs a migration asked of it, and whether it takes
// a task offered to it. The sessions themselves are in node/migration/.
#include <spdlog/spdlog.h>

#include "cr/resources/files/sockets.h"
#include "cr/resources/registers.h"
#include "node/daemon.h"
#include "node/file_checks.h"
#include "node/migration/forwarded.h"
#include "node/migration/outgoing.h"
#include "node/states.h"
#include "transfer/frame_auth.h"
#include "util/error.h"

namespace ferry::node {

void Daemon::migrate(const rpc::MigrateRequest& req,
                     const std::function<void(const rpc::MigrateEvent&)>& emit) {
  if (!tasks_.get(req.task_id())) {
    rpc::TaskInfo t = locate(req.task_id());
    if (t.state() == rpc::TASK_EXITED)
      fail_as(Error::Kind::kTaskEnded, "task {} has ended (exit status {})", t.id(), t.exit_code());
    if (t.state() == rpc::TASK_LOST)
      fail_as(Error::Kind::kTaskEnded, "task {} is lost: {}", t.id(), t.exit_reason());
    if (t.node() != name()) return forward_migration(ctx_, req, t, emit);
  }
  OutgoingMigration(ctx_, req, emit).run();
  // The other nodes learn at once that the task left (its destination reports it at its next
  // tick: until then it counts the task as reserved demand).
  report_now();
}

// Why this node cannot take the task now ("" when it can).
std::string Daemon::refusal(const rpc::OfferRequest& req) {
  if (stopping_) return "node " + name() + " is shutting down";
  if (!transfer::find_strategy(req.strategy()))
    return "node " + name() + " does not know strategy " + req.strategy();
  if (std::string why = policy_refusal(req); !why.empty()) return why;
  if (tasks_.count() >= cfg_.max_tasks)
    return fmt::format("node {} is overloaded: it runs its maximum of {} tasks", name(),
                       cfg_.max_tasks);
  LoadSample load;
  {
    std::lock_guard<std::mutex> lock(load_mu_);
    load = last_load_;
  }
  if (cfg_.max_load_per_cpu > 0 && load.load_avg / load.cpus > cfg_.max_load_per_cpu)
    return fmt::format("node {} is overloaded: load {:.2f} per CPU (limit {:.2f})", name(),
                       load.load_avg / load.cpus, cfg_.max_load_per_cpu);
  if (load.mem_free_bytes < req.rss_bytes() + cfg_.reserve_memory_bytes)
    return fmt::format(
        "not enough memory on {}: the task needs {} MiB, {} MiB are free ({} MiB kept in reserve)",
        name(), req.rss_bytes() >> 20, load.mem_free_bytes >> 20, cfg_.reserve_memory_bytes >> 20);
  for (auto& [k, v] : req.task().labels()) {
    auto it = cfg_.labels.find(k);
    if (it == cfg_.labels.end() || it->second != v)
      return fmt::format("node {} lacks the label {}={} the task requires", name(), k, v);
  }
  if (req.xstate_size() != cr::local_xstate_size() || (req.xcr0() & ~cr::local_xcr0()))
    return fmt::format(
        "node {} has other CPU features (xstate {} bytes, features {:#x}; the task uses {} bytes, "
        "{:#x})",
        name(), cr::local_xstate_size(), cr::local_xcr0(), req.xstate_size(), req.xcr0());
  if (std::string files = check_files(req.files()); !files.empty()) return files;
  if (req.data_key().size() != 16) return "bad page stream key";
  if (!transfer::frames_match(faults_.frame_format(), req.frame_format()))
    return fmt::format(
        "node {} runs another ferry build than the source (page frames of format {} here, {} "
        "there)",
        name(), faults_.frame_format(), req.frame_format());
  for (auto& a : req.bound_addresses())
    if (std::string why = cr::address_unavailable_here(a); !why.empty())
      return fmt::format("node {} cannot take the task: {}", name(), why);
  return "";
}

rpc::OfferReply Daemon::offer(const rpc::OfferRequest& req) {
  rpc::OfferReply reply;
  // A Starter's proposal: the decision is an event here too, with this node's reason.
  auto decided = [&](const char* kind, const std::string& why) {
    if (req.policy().empty()) return;
    rpc::PolicyEvent e;
    e.set_kind(kind);
    e.set_task(req.task().id());
    e.set_from(req.task().node());
    e.set_to(name());
    e.set_policy(req.policy());
    e.set_reason(why);
    events_.add(e);
  };
  auto refuse = [&](const std::string& why) {
    reply.set_accepted(false);
    reply.set_reason(why);
    spdlog::info("refused task {}: {}", req.task().id(), why);
    decided("refuses", why);
    return reply;
  };
  if (std::string why = refusal(req); !why.empty()) return refuse(why);
  cr::CgroupRebase cgroups{{req.source_cgroups().begin(), req.source_cgroups().end()},
                           cr::own_cgroup_lines()};
  if (std::string why = cr::missing_cgroups({req.cgroups().begin(), req.cgroups().end()}, &cgroups);
      !why.empty())
    return refuse(fmt::format("node {} cannot give the task its control groups: {}", name(), why));
  auto m = std::make_shared<IncomingMigration>(ctx_, req, *transfer::find_strategy(req.strategy()),
                                               std::move(cgroups));
  if (!incoming_.add(m)) return refuse("duplicate migration id");
  reply.set_accepted(true);
  decided("accepts", fmt::format("its load with the task: {:.2f}",
                                 policy::load_with(self_view(), std::min(req.task_demand(), 1.0))));
  reserve_demand(req.task().id(), req.task_demand());
  reply.set_data_address(cfg_.data_listen);
  reply.set_frame_format(faults_.frame_format());
  reply.set_token(std::string(reinterpret_cast<const char*>(m->token().data()), m->token().size()));
  return reply;
}

}  // namespace ferry::node
