#include "node/snapshots/participant.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>

#include "node/peers.h"
#include "node/services.h"
#include "node/snapshots/task_recorder.h"
#include "snapshot/channel_state.h"
#include "snapshot/store.h"
#include "util/error.h"

namespace ferry::node {

SnapshotParticipant::SnapshotParticipant(Env env)
    : env_(std::move(env)), sender_([this] { send_loop(); }) {}

SnapshotParticipant::~SnapshotParticipant() {
  std::vector<Recorder> recorders;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    recorders.swap(recorders_);
    cv_.notify_all();
  }
  for (auto& r : recorders) r.thread.join();
  sender_.join();
}

void SnapshotParticipant::join_finished() {
  for (auto it = recorders_.begin(); it != recorders_.end();) {
    if (!*it->finished) {
      ++it;
      continue;
    }
    it->thread.join();
    it = recorders_.erase(it);
  }
}

std::string SnapshotParticipant::store_of(const rpc::SnapshotBeginRequest& b) const {
  return b.store().empty() ? env_.default_store : b.store();
}

void SnapshotParticipant::begin(const rpc::SnapshotBeginRequest& b) {
  if (b.marker() == 0 || b.marker() >= ReaderEnd::kChannelEnded - 1 ||
      !snapshot::SnapshotStore::valid_id(b.id()))
    fail_as(Error::Kind::kBadInput, "a snapshot needs an id and a marker");
  std::lock_guard<std::mutex> lock(mu_);
  active_[b.marker()].begin = b;
}

void SnapshotParticipant::end(uint64_t marker) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_.erase(marker);
  }
  // Recordings still on (a snapshot that failed or timed out) are dropped.
  env_.channels->drop_recordings(marker);
}

std::optional<rpc::SnapshotBeginRequest> SnapshotParticipant::known(uint64_t marker) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = active_.find(marker);
  if (it == active_.end()) return std::nullopt;
  return it->second.begin;
}

std::optional<rpc::SnapshotBeginRequest> SnapshotParticipant::claim(
    uint64_t marker, const std::string& task_id, const std::function<bool()>& leave_it,
    bool* left) {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    auto it = active_.find(marker);
    if (it == active_.end()) return std::nullopt;
    auto [state, fresh] = it->second.tasks.try_emplace(task_id, TaskState::kRecording);
    if (fresh) return it->second.begin;
    if (state->second != TaskState::kRecording) return std::nullopt;
    // Another thread records it now. One that would leave the task to its next node anyway
    // needs no outcome (the coordinator's ask must not wait out a migration); others wait for
    // it (it may leave the task too, and then this one tries). A migration holds the task's
    // ends one by one, and the other may wait for its own end's hold, which comes after this
    // one's: so the wait also looks, every 2 ms, whether this one's end is held by now.
    auto settled = [&] {
      auto a = active_.find(marker);
      if (a == active_.end()) return true;
      auto t = a->second.tasks.find(task_id);
      return t == a->second.tasks.end() || t->second != TaskState::kRecording;
    };
    while (!settled()) {
      if (leave_it()) {
        *left = true;
        return std::nullopt;
      }
      cv_.wait_for(lock, std::chrono::milliseconds(2));
    }
  }
}

bool SnapshotParticipant::record(uint64_t marker, const std::string& task_id,
                                 const std::function<bool()>& leave_it) {
  // Recorded at the node it came from (its ends' recordings came along).
  if (env_.channels && env_.channels->carries_recording(task_id, marker)) return true;
  bool left = false;
  std::optional<rpc::SnapshotBeginRequest> b = claim(marker, task_id, leave_it, &left);
  if (!b) return !left;
  std::optional<TaskCut> cut;
  std::string name = task_id;
  try {
    cut = record_unless_it_moves(*b, task_id, &name, leave_it);
    left = !cut;
  } catch (const std::exception& e) {
    fail(*b, e.what());
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    auto a = active_.find(marker);
    if (a != active_.end() && left) a->second.tasks.erase(task_id);
    if (a != active_.end() && !left)
      a->second.tasks[task_id] = cut ? TaskState::kRecorded : TaskState::kFailed;
    cv_.notify_all();
  }
  if (left) return false;
  if (cut) send_cut(*b, task_id, name, *cut);
  return true;
}

// The cuts go first, on their own: the channels' parts may come before the image is written.
void SnapshotParticipant::send_cut(const rpc::SnapshotBeginRequest& b, const std::string& task_id,
                                   const std::string& name, const TaskCut& cut) {
  rpc::SnapshotPartRequest part;
  part.set_marker(b.marker());
  part.set_node(env_.node);
  part.mutable_task()->set_name(name);
  part.mutable_task()->set_task_id(task_id);
  part.mutable_task()->set_node(env_.node);
  part.mutable_task()->set_pause_ms(cut.pause_ms);
  for (auto& c : cut.cuts) *part.add_cuts() = c;
  send(b.coordinator(), std::move(part));
  for (auto& end : cut.ended) finish_channel(*end, b.marker());
}

namespace {
// A migration under way: the task cannot be paused (both would trace it).
struct TaskMigrating : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

// The task may be recorded here once its migration is over (it failed, or never began), or by
// the node it moves to: `leave_it()` says when that is so (its ends are held and go along with
// the markers they have not taken). Bounded: a migration ends within seconds.
std::optional<SnapshotParticipant::TaskCut> SnapshotParticipant::record_unless_it_moves(
    const rpc::SnapshotBeginRequest& b, const std::string& task_id, std::string* name,
    const std::function<bool()>& leave_it) {
  constexpr auto kMigrationWait = std::chrono::seconds(30);
  const auto deadline = std::chrono::steady_clock::now() + kMigrationWait;
  bool told = false;
  for (;;) {
    std::optional<LocalTask> local = env_.task(task_id);
    // Gone from here just now: moved on (or ended, which the coordinator sees where it asks).
    if (!local && leave_it()) return std::nullopt;
    if (!local || !local->migrating) {
      try {
        return record_here(b, task_id, name);
      } catch (const TaskMigrating&) {
        continue;  // (it began to migrate meanwhile)
      }
    }
    if (leave_it()) {
      // (Quiet when the coordinator asked: it asks every 50 ms while the task migrates.)
      spdlog::log(told ? spdlog::level::info : spdlog::level::debug,
                  "snapshot {}: task {} migrates; the node it moves to records it", b.id(),
                  task_id);
      return std::nullopt;
    }
    if (!known(b.marker())) ferry::fail("the snapshot ended while task {} migrated", task_id);
    if (std::chrono::steady_clock::now() >= deadline)
      ferry::fail("task {} has been migrating for over 30 s: it cannot be recorded now", task_id);
    if (!told) spdlog::info("snapshot {}: task {} migrates; its recording waits", b.id(), task_id);
    told = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// Another snapshot's recording of the task holds it for a moment: the turn waits for it. Then
// no migration of the task may begin until the turn ends (a migration under way refuses it).
class SnapshotParticipant::RecordingTurn {
 public:
  RecordingTurn(SnapshotParticipant& self, const std::string& task_id, pid_t pid)
      : self_(self), task_id_(task_id), pid_(pid) {
    {
      std::unique_lock<std::mutex> l(self_.mu_);
      self_.cv_.wait(l, [&] { return !self_.freezing_.count(task_id_); });
      self_.freezing_.insert(task_id_);
    }
    if (!self_.env_.begin_recording(task_id_, pid_)) {
      leave();
      throw TaskMigrating("task " + task_id_ + " migrates");
    }
  }
  ~RecordingTurn() {
    self_.env_.end_recording(task_id_, pid_);
    leave();
  }
  RecordingTurn(const RecordingTurn&) = delete;
  RecordingTurn& operator=(const RecordingTurn&) = delete;

 private:
  void leave() {
    {
      std::lock_guard<std::mutex> l(self_.mu_);
      self_.freezing_.erase(task_id_);
    }
    self_.cv_.notify_all();
  }

  SnapshotParticipant& self_;
  const std::string task_id_;
  const pid_t pid_;
};

// A task whose pages are still coming cannot be forked or read (the copy would not have them).
// Its recording waits for the last one: the reader ends hold what follows a marker meanwhile, so
// the cut is simply taken later (bounded; the lazy phase ends within seconds).
void SnapshotParticipant::await_pages(const std::string& task_id) {
  constexpr auto kPagesWait = std::chrono::seconds(20);
  if (!env_.pages_coming || !env_.pages_coming(task_id)) return;
  spdlog::info("snapshot: task {} waits for its last pages before it is recorded", task_id);
  if (!env_.await_pages(task_id, std::chrono::steady_clock::now() + kPagesWait))
    ferry::fail(
        "task {} is still receiving its pages after a migration (20 s): it cannot be "
        "recorded now; take the snapshot again",
        task_id);
}

// Freezes, cuts and forks the task (one snapshot at a time), and leaves its image to a recorder
// thread; returns once it runs again. Throws with the reason it could not be recorded.
SnapshotParticipant::TaskCut SnapshotParticipant::record_here(const rpc::SnapshotBeginRequest& b,
                                                              const std::string& task_id,
                                                              std::string* name) {
  await_pages(task_id);
  std::optional<LocalTask> local = env_.task(task_id);
  if (!local) ferry::fail("task {} is not on {} any more: it ended, or moved", task_id, env_.node);
  TaskToRecord t;
  t.task_id = task_id;
  t.name = *name = local->info.name().substr(local->info.name().find('/') + 1);
  t.pid = local->info.pid();
  t.ends.assign(local->info.channel_ends().begin(), local->info.channel_ends().end());
  t.marker = b.marker();
  t.node = env_.node;
  t.ended = [this, task_id](int code) { env_.ended(task_id, code); };
  t.image_dir = snapshot::SnapshotStore(store_of(b)).task_dir(b.id(), t.name);
  t.unsent_path = [store = store_of(b), id = b.id()](uint32_t channel) {
    return snapshot::SnapshotStore(store).unsent_path(id, channel);
  };
  RecordingTurn turn(*this, task_id, t.pid);
  std::promise<TaskCut> paused;
  std::future<TaskCut> cut = paused.get_future();
  auto finished = std::make_shared<std::atomic<bool>>(false);
  std::thread recorder = record_task(
      t, *env_.channels, std::move(paused),
      [this, b](rpc::SnapshotTaskReport report, std::string failure) {
        if (!failure.empty()) return fail(b, failure);
        rpc::SnapshotPartRequest part;
        part.set_marker(b.marker());
        part.set_node(env_.node);
        *part.mutable_task() = std::move(report);
        send(b.coordinator(), std::move(part));
      },
      finished);
  {
    std::lock_guard<std::mutex> l(mu_);
    join_finished();
    recorders_.push_back({std::move(recorder), finished});
  }
  try {
    return cut.get();
  } catch (const std::exception& e) {
    ferry::fail("task {} could not be recorded: {}", t.name, e.what());
  }
}

bool SnapshotParticipant::on_marker(ReaderEnd& end, uint64_t marker) {
  if (marker == ReaderEnd::kChannelEnded) {
    for (uint64_t m : end.recordings()) finish_channel(end, m);
    return true;
  }
  // The task was recorded at the node it came from, and the recording came along: it is complete.
  if (end.carries_recording(marker)) {
    finish_channel(end, marker);
    return true;
  }
  if (!known(marker)) return true;  // (a snapshot that ended, or failed: the marker is passed over)
  if (!record(marker, end.task_id(), [&end] { return end.holding(); })) return false;
  finish_channel(end, marker);
  return true;
}

void SnapshotParticipant::finish_channel(ReaderEnd& end, uint64_t marker) {
  std::optional<ReaderEnd::Recording> rec = end.finish_recording(marker);
  std::optional<rpc::SnapshotBeginRequest> b = known(marker);
  if (!b || !rec) return;
  const rpc::ChannelEnd& spec = end.spec();
  if (!rec->failure.empty()) return fail(*b, rec->failure);
  if (b->drop_one_recorded() && !rec->items.empty()) {
    rec->bytes -= rec->items.front().size();
    rec->items.erase(rec->items.begin());
  }
  if (rec->recorded_at.empty() || rec->recorded_at == env_.node)
    return keep(*b, spec.channel(), spec.messages(), rec->items, rec->bytes);
  rpc::RecordedChannelRequest state;
  state.set_marker(marker);
  state.set_channel(spec.channel());
  state.set_messages(spec.messages());
  for (auto& item : rec->items) state.add_items(std::move(item));
  state.set_bytes(rec->bytes);
  state.set_from_node(env_.node);
  // It came along with the task's end: its state goes with the task's image (a restore rebuilds
  // the task there, and refills its channels from there).
  spdlog::info("snapshot {}: channel {}'s recording came with task {}; its state goes to {}",
               b->id(), spec.channel(), end.task_id(), rec->recorded_at);
  const std::string to = rec->recorded_at;
  post([this, b = *b, to, state = std::move(state)] {
    try {
      rpc::Ack ack;
      auto ctx = deadline_ms(30000);
      check_status(env_.stub(to).RecordedChannel(ctx.get(), state, &ack), "node " + to);
    } catch (const std::exception& e) {
      fail(b, fmt::format("the state of channel {} could not be handed to {}: {}", state.channel(),
                          to, e.what()));
    }
  });
}

void SnapshotParticipant::keep_channel(const rpc::RecordedChannelRequest& state) {
  std::optional<rpc::SnapshotBeginRequest> b = known(state.marker());
  if (!b) return;  // (it has ended: failed, or timed out)
  keep(*b, state.channel(), state.messages(),
       std::vector<std::string>(state.items().begin(), state.items().end()), state.bytes());
}

void SnapshotParticipant::keep(const rpc::SnapshotBeginRequest& b, uint32_t channel, bool messages,
                               const std::vector<std::string>& items, uint64_t bytes) {
  rpc::SnapshotPartRequest part;
  part.set_marker(b.marker());
  part.set_node(env_.node);
  rpc::SnapshotChannelReport* c = part.mutable_channel();
  c->set_channel(channel);
  c->set_messages(messages);
  c->set_recorded_bytes(bytes);
  c->set_recorded_messages(messages ? items.size() : 0);
  c->set_recorded(true);
  c->set_node(env_.node);
  try {
    snapshot::SnapshotStore store(store_of(b));
    c->set_state_path(store.channel_path(b.id(), channel));
    snapshot::write_channel_state(c->state_path(), items);
  } catch (const std::exception& e) {
    return fail(b,
                fmt::format("the state of channel {} could not be written: {}", channel, e.what()));
  }
  send(b.coordinator(), std::move(part));
}

void SnapshotParticipant::fail(const rpc::SnapshotBeginRequest& b, const std::string& why) {
  spdlog::warn("snapshot {}: {}", b.id(), why);
  rpc::SnapshotPartRequest part;
  part.set_marker(b.marker());
  part.set_node(env_.node);
  part.set_failure(why);
  send(b.coordinator(), std::move(part));
}

void SnapshotParticipant::send(const std::string& coordinator, rpc::SnapshotPartRequest part) {
  post([this, coordinator, part = std::move(part)] {
    try {
      rpc::Ack ack;
      auto ctx = deadline_ms(5000);
      check_status(env_.stub(coordinator).SnapshotPart(ctx.get(), part, &ack),
                   "snapshot coordinator " + coordinator);
    } catch (const std::exception& e) {
      spdlog::warn("snapshot: a part for {} is lost: {}", coordinator, e.what());
    }
  });
}

void SnapshotParticipant::post(std::function<void()> call) {
  std::lock_guard<std::mutex> lock(mu_);
  outbox_.push_back(std::move(call));
  cv_.notify_all();
}

void SnapshotParticipant::send_loop() {
  for (;;) {
    std::function<void()> next;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !outbox_.empty(); });
      if (outbox_.empty()) return;
      next = std::move(outbox_.front());
      outbox_.pop_front();
    }
    next();
  }
}

}  // namespace ferry::node
