// A ferryd that starts on a node where an earlier one ran: the tasks its table lists are adopted
// when they still run (same pid, same start time), reported ended when ferry-init kept their
// exit status, and reported lost, with the reason, otherwise. A task never silently vanishes.
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "cr/image_paths.h"
#include "node/daemon.h"
#include "node/states.h"
#include "util/proc.h"

namespace ferry::node {
namespace {

bool still_runs(const rpc::LocalTaskRecord& r) {
  pid_t pid = r.task().pid();
  return pid > 0 && r.start_ticks() && r.boot_id() == cr::boot_id() &&
         process_start_ticks(pid) == r.start_ticks() && proc::Stat(pid).state() != 'Z';
}

}  // namespace

void Daemon::adopt_tasks() {
  std::vector<rpc::LocalTaskRecord> records = tasks_.load_table();
  std::map<std::string, InitLink::KeptPipe> kept = init_.take_kept();
  // The exits ferry-init kept are handed over now, and more may come while the table is gone
  // through: they are matched against it first, then (switched) go to on_orphan_exit.
  std::mutex mu;
  std::vector<OrphanExit> exits;
  bool switched = false;
  init_.on_exit([&, this](const OrphanExit& e) {
    std::unique_lock<std::mutex> lock(mu);
    if (!switched) {
      exits.push_back(e);
      return;
    }
    lock.unlock();
    queue_orphan_exit(e);
  });
  for (auto& r : records) {
    // (Not under `mu`: adopting may wait for ferry-init, whose messages pass the handler above.)
    std::vector<OrphanExit> known;
    {
      std::lock_guard<std::mutex> lock(mu);
      known = exits;
    }
    try {
      if (auto used = adopt_task(r, kept, known)) {
        std::lock_guard<std::mutex> lock(mu);
        std::erase_if(exits, [&](const OrphanExit& e) {
          return e.pid == used->pid && e.start_ticks == used->start_ticks;
        });
      }
    } catch (const std::exception& e) {
      spdlog::error("cannot adopt task {}: {}", r.task().id(), e.what());
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    switched = true;
  }
  init_.on_exit([this](const OrphanExit& e) { queue_orphan_exit(e); });
  for (auto& e : exits) queue_orphan_exit(e);  // (not a task's: forgotten there)
  for (auto& [name, fd] : kept) {
    // A task that was still getting its pages when ferryd died: nobody can bring them any more,
    // and it must not run on with holes in its memory.
    if (name.rfind("uffd:", 0) == 0) {
      std::string task = name.substr(name.find(':', 5) + 1);
      if (auto t = tasks_.get(task)) {
        std::string why = "killed by ferry: its pages could not come (ferryd died during its "
                          "lazy phase)";
        spdlog::warn("task {}: {}", task, why);
        tasks_.set_exit_reason(task, why);
        ::kill(t->info.pid(), SIGKILL);
      }
    } else {
      spdlog::info("dropping the output pipe of {}, which no longer runs here", name);
    }
    init_.drop(name);
  }
}

std::optional<OrphanExit> Daemon::adopt_task(const rpc::LocalTaskRecord& r,
                                             std::map<std::string, InitLink::KeptPipe>& kept,
                                             const std::vector<OrphanExit>& exits) {
  const rpc::TaskInfo& t = r.task();
  auto pipe = kept.find(t.id());
  auto exit = std::find_if(exits.begin(), exits.end(), [&](const OrphanExit& e) {
    return e.pid == t.pid() && e.start_ticks == r.start_ticks();
  });
  if (!r.committing_to().empty()) {
    // Its migration reached Commit, and its original was marked to die with ferryd: whether the
    // task lives on depends on the destination alone. Never twice, never reported ended by the
    // death of its original.
    std::optional<std::string> settled = settle_commit(r);
    if (settled) {
      std::optional<OrphanExit> used;
      if (exit != exits.end()) {
        init_.forget(*exit);
        used = *exit;
      }
      if (!settled->empty()) {
        spdlog::warn("task {} is lost: {}", t.id(), *settled);
        report_end(t, 0, *settled, true);
      }
      return used;  // (its pipe is dropped with the others left over)
    }
  }
  if (still_runs(r)) {
    rpc::LocalTaskRecord adopted = r;
    adopted.clear_committing_to();
    adopted.clear_session_id();
    tasks_.adopt(adopted);
    if (pipe != kept.end()) {
      relay_.adopt(t.id(), t.home(), std::move(pipe->second.fd), pipe->second.consumed);
      kept.erase(pipe);
    } else {
      spdlog::warn("task {}: its output pipe was not kept; its output is lost from here on",
                   t.id());
    }
    spdlog::info("adopted task {} (pid {}), left running by an earlier ferryd", t.id(), t.pid());
    return std::nullopt;
  }
  if (exit != exits.end()) {
    // Gone, with its exit status: ferry-init reaped it. What it wrote before still reaches home.
    int code = proc::exit_code_of(exit->status);
    if (pipe != kept.end()) {
      relay_.adopt(t.id(), t.home(), std::move(pipe->second.fd), pipe->second.consumed);
      kept.erase(pipe);
      try {
        relay_.drain_and_detach(t.id(), 3000);
      } catch (const std::exception& e) {
        spdlog::warn("output of {} after its end: {}", t.id(), e.what());
        relay_.detach(t.id());
      }
    }
    spdlog::info("task {} ended with status {} while ferryd was down", t.id(), code);
    report_end(t, code, "", false);
    init_.forget(*exit);
    return *exit;
  }
  std::string reason =
      r.boot_id() != cr::boot_id() || r.init_id() != init_.init_id()
          ? fmt::format("node {} restarted; the task did not survive it", name())
          : fmt::format("it ended on {} while no ferryd watched it, and its exit status was lost",
                        name());
  spdlog::warn("task {} is lost: {}", t.id(), reason);
  report_end(t, 0, reason, true);
  return std::nullopt;
}

std::optional<std::string> Daemon::settle_commit(const rpc::LocalTaskRecord& r) {
  const rpc::TaskInfo& t = r.task();
  rpc::MigrationStatusRequest q;
  q.set_session_id(r.session_id());
  rpc::MigrationStatusReply st;
  auto ctx = deadline_ms(3000);
  bool answered = peers_.known(r.committing_to()) &&
                  peers_.stub(r.committing_to()).MigrationStatus(ctx.get(), q, &st).ok();
  bool there = answered && (st.state() == rpc::MIGRATION_RUNNING ||
                                st.state() == rpc::MIGRATION_PULLING);
  if (!there && still_runs(r)) return std::nullopt;  // not released there: it is ours again
  if (still_runs(r)) ::kill(t.pid(), SIGKILL);
  if (there) {
    spdlog::info("task {} runs at {}, where it was migrating when ferryd died", t.id(),
                 r.committing_to());
    return "";
  }
  return answered ? fmt::format("its ferryd on {} died while committing its migration to {}, "
                                "which did not take it ({})",
                                name(), r.committing_to(), name_of(st.state()))
                  : fmt::format("its ferryd on {} died while committing its migration to {}, "
                                "which does not answer",
                                name(), r.committing_to());
}

void Daemon::queue_orphan_exit(const OrphanExit& e) {
  {
    std::lock_guard<std::mutex> lock(orphan_mu_);
    orphan_exits_.push_back(e);
  }
  uint64_t one = 1;
  (void)!::write(orphan_wake_.get(), &one, sizeof one);
}

void Daemon::on_orphan_exit(const OrphanExit& e) {
  for (auto& t : tasks_.all())
    if (t.info.pid() == e.pid && t.start_ticks == e.start_ticks) {
      on_exit(t.info.id(), proc::exit_code_of(e.status));
      break;
    }
  init_.forget(e);
}

}  // namespace ferry::node
