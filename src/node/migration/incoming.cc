// The destination side of a migration: the source's calls. The offer was accepted (the node's
// admission, admission.cc); prepare lays out the address space early, tasking rebuilds the task
// from the remote tasking message and holds it until Commit, commit lets it run here.
#include "node/migration/incoming.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "cr/provided.h"
#include "image/image_files.h"
#include "image/validate.h"
#include "node/channels/writer_end.h"
#include "node/states.h"
#include "node/task_fds.h"
#include "util/error.h"

namespace ferry::node {
namespace {

constexpr int kReceiveWaitMs = 120000;

AddressRanges ranges_of(const google::protobuf::RepeatedPtrField<rpc::MemRange>& in) {
  AddressRanges out;
  for (auto& r : in) {
    if (r.start() % 4096 || r.end() % 4096 || r.end() <= r.start())
      fail_as(Error::Kind::kBadInput, "bad memory range {:x}-{:x} in the tasking message",
              r.start(), r.end());
    out.push_back({r.start(), r.end()});
  }
  std::sort(out.begin(), out.end());
  for (size_t i = 1; i < out.size(); i++)
    if (out[i].start < out[i - 1].end)
      fail_as(Error::Kind::kBadInput, "overlapping memory ranges in the tasking message");
  return out;
}

// Retained memory must be private anonymous memory in both layouts.
void check_retained(const AddressRanges& retained, const image::Image& a, const image::Image& b) {
  auto inside_anon = [](const image::Image& img, uint64_t s, uint64_t e) {
    for (auto& v : img.memory().vmas())
      if (v.kind() == image::Vma::ANON_PRIVATE && v.start() <= s && e <= v.end()) return true;
    return false;
  };
  for (auto& [s, e] : retained)
    if (!inside_anon(a, s, e) || !inside_anon(b, s, e))
      fail_as(Error::Kind::kBadInput,
              "retained memory {:x}-{:x} is not private anonymous memory in both layouts", s, e);
}

// The layout part of a description: what the builder was made from (with the process's pid and
// executable; its other attributes are read later).
std::string layout_of(const image::Image& img) {
  image::Image layout;
  layout.mutable_process()->set_pid(img.process().pid());
  layout.mutable_process()->set_exe_path(img.process().exe_path());
  *layout.mutable_process()->mutable_exe() = img.process().exe();
  *layout.mutable_memory() = img.memory();
  layout.mutable_memory()->clear_mm();
  layout.mutable_memory()->clear_pages();
  return layout.SerializeAsString();
}

AddressRanges anonymous_ranges(const image::Image& img) {
  AddressRanges out;
  for (auto& v : img.memory().vmas())
    if (v.kind() == image::Vma::ANON_PRIVATE) out.push_back({v.start(), v.end()});
  return out;
}

// The test fault slow-arrival-entry: until the child `pid` has ended (left as a zombie, its
// status not taken) or timeout_ms passed.
void await_end_unreaped(pid_t pid, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT | WNOHANG) == 0 &&
        info.si_pid == pid)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

IncomingMigration::IncomingMigration(NodeContext& node, const rpc::OfferRequest& offer,
                                     const transfer::Strategy& strategy, cr::CgroupRebase cgroups)
    : node_(node),
      id_(offer.session_id()),
      task_(offer.task()),
      source_node_(offer.task().node()),
      strategy_(strategy),
      cgroups_(std::move(cgroups)),
      token_(transfer::random_token()) {
  std::memcpy(key_.data(), offer.data_key().data(), key_.size());
  // What may arrive: the resident memory, plus room for shared memory and unlinked files;
  // pre-copy sends pages again when they change (at most once per round).
  limit_ = (offer.rss_bytes() + (256ull << 20)) * strategy.arrivals_per_page();
}

IncomingMigration::~IncomingMigration() {
  tear_down(rpc::MIGRATION_ABORTED);
}

rpc::MigrationState IncomingMigration::state() {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

bool IncomingMigration::await_pages(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_until(lock, deadline, [this] {
    return state_ != rpc::MIGRATION_READY && state_ != rpc::MIGRATION_PULLING;
  });
}

rpc::MigrationStatusReply IncomingMigration::status() {
  std::lock_guard<std::mutex> lock(mu_);
  rpc::MigrationStatusReply reply;
  reply.set_state(state_);
  reply.set_last_page_ms(last_page_ms_);
  reply.set_lazy_bytes(lazy_bytes_);
  reply.set_lazy_pages(lazy_pages_);
  reply.set_faults(lazy_faults_);
  return reply;
}

std::string IncomingMigration::lazy_memory_name() const {
  return "uffd:" + id_ + ":" + task_.id();
}

void IncomingMigration::tear_down(rpc::MigrationState final_state) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (state_ != rpc::MIGRATION_RUNNING) state_ = final_state;
    cv_.notify_all();
    // Break off a receiving thread and wait for it: it uses the builder.
    if (receiving_ && stream_fd_ >= 0) ::shutdown(stream_fd_, SHUT_RDWR);
    cv_.wait(lock, [this] { return !receiving_; });
  }
  // The builder and the held copy go on their ptrace thread; either kills what it holds.
  if (builder_ || built_)
    worker_->run([this] {
      builder_.reset();
      built_.reset();
    });
  // A task still waiting for pages dies with its pager (a process with holes must not run on).
  if (filler_.joinable()) filler_.join();
  pager_.reset();
  store_.reset();
  if (!store_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(store_dir_, ec);
  }
}

rpc::TaskingReply IncomingMigration::not_ready(rpc::TaskingReply& reply, const std::string& why) {
  spdlog::warn("cannot take task {}: {}", task_.id(), why);
  tear_down(rpc::MIGRATION_FAILED);
  reply.set_ready(false);
  reply.set_reason(why);
  return reply;
}

cr::BuildOptions IncomingMigration::build_options(bool lazy) {
  // The task's output pipe now ends at this node's relay.
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
  output_read_.reset(p[0]);
  output_write_.reset(p[1]);
  cr::BuildOptions options;
  options.lazy = lazy;
  options.uffd_features = lazy ? transfer::lazy_uffd_features() : 0;
  const image::Image& img = strategy_.sends_rounds() ? prelim_ : image_;
  // The task's channel ends end at this node's channel ends now, and its control descriptor at
  // this node's.
  channel_pipes_ = ChannelEnds::make_pipes(task_.channel_ends());
  control_ = ControlDescriptors::make_pair();
  options.external_fds =
      external_fds_of(img, task_.channel_ends(),
                      TaskEndsHere{&channel_pipes_, control_.task_side.get(), output_write_.get()});
  return options;
}

void IncomingMigration::refill_channel_pipes(const ChannelHandoffs& handoffs) {
  for (auto& end : task_.channel_ends()) {
    if (end.writer()) {
      for (auto& h : handoffs)
        if (h.writer() && h.job() == end.job() && h.channel() == end.channel())
          WriterEnd::put_back_untaken(h, channel_pipes_.task_side.at(end.fd()).get());
      continue;
    }
    // A reader that closed its end has nothing unread.
    const image::PipeObject* po = channel_pipe_of(image_, end);
    if (po && !po->queued().empty()) {
      int w = channel_pipes_.node_side.at(end.fd()).get();
      ::fcntl(w, F_SETPIPE_SZ, static_cast<int>(std::max<size_t>(po->queued().size(), 1 << 20)));
      // (What does not fit fails the commit, and the task runs on at its source: a blocking
      // write would hang it.)
      ::fcntl(w, F_SETFL, ::fcntl(w, F_GETFL) | O_NONBLOCK);
      ssize_t n = ::write(w, po->queued().data(), po->queued().size());
      if (n != static_cast<ssize_t>(po->queued().size()))
        fail_errno(n < 0 ? errno : ENOSPC, "cannot put back the {} unread bytes of channel fd {}",
                   po->queued().size(), end.fd());
    }
  }
}

// The first description of the running task, and the address space laid out from it while the
// task still runs. Pre-copy: a whole description, and the rounds' pages go straight to their
// place. Eager-all, eager-dirty, copy-on-reference: the layout only (describe_layout()); if the
// freeze finds it unchanged, the tasking message's description is adopted as it is.
rpc::TaskingReply IncomingMigration::prepare(const rpc::TaskingRequest& req) {
  rpc::TaskingReply reply;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != rpc::MIGRATION_OFFERED || strategy_.stores_pages())
      return not_ready(reply, "unexpected prepare message (" + name_of(state_) + ")");
    state_ = rpc::MIGRATION_PREPARING;
  }
  const bool precopy = strategy_.sends_rounds();
  try {
    if (!prelim_.ParseFromString(req.image()))
      fail_as(Error::Kind::kBadInput, "the prepare message is corrupted");
    if (precopy)
      image::validate(prelim_, prelim_.pages_file().size());
    else
      image::validate_layout(prelim_, prelim_.pages_file().size());
    cr::BuildOptions options = build_options(strategy_.has_lazy_phase());
    worker_->run([&] { builder_ = std::make_unique<cr::ProcessBuilder>(prelim_, options); });
  } catch (const std::exception& e) {
    return not_ready(reply, e.what());
  }
  std::lock_guard<std::mutex> lock(mu_);
  state_ = precopy ? rpc::MIGRATION_ROUNDS : rpc::MIGRATION_PREPARED;
  cv_.notify_all();
  reply.set_ready(true);
  return reply;
}

rpc::TaskingReply IncomingMigration::tasking(const rpc::TaskingRequest& req) {
  rpc::TaskingReply reply;
  Stopwatch since;
  bool prepared = false;  // laid out before the freeze from the layout of the running task
  if (std::string why = take_tasking_turn(req, &prepared); !why.empty())
    return not_ready(reply, why);
  try {
    build(req, prepared);
    if (strategy_.stores_pages()) open_page_store(req);
  } catch (const std::exception& e) {
    return not_ready(reply, e.what());
  }
  const double built_ms = since.elapsed_ms();
  if (std::string why = await_frozen_pages(); !why.empty()) return not_ready(reply, why);
  const double received_ms = since.elapsed_ms();
  try {
    reply.set_bytes_placed(builder_->bytes_placed());
    reply.set_stream_ms(stream_ms_);
    if (strategy_.has_lazy_phase()) start_pager();
    worker_->run([&] {
      built_.emplace(builder_->finish());
      builder_.reset();
      // Into its groups before it ever runs here (a failure kills this copy; the source goes on).
      cr::enter_cgroups(built_->pid(), image_.attrs(), &cgroups_);
    });
  } catch (const std::exception& e) {
    return not_ready(reply, e.what());
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (state_ != rpc::MIGRATION_RECEIVED) {
      std::string why =
          "the migration was " + name_of(state_) + (error_.empty() ? "" : ": " + error_);
      lock.unlock();
      return not_ready(reply, why);
    }
    state_ = rpc::MIGRATION_READY;
  }
  reply.set_ready(true);
  reply.set_restore_ms(since.elapsed_ms());
  spdlog::debug("task {} ready in {:.1f} ms (built {:.1f}, pages in {:.1f})", task_.id(),
                reply.restore_ms(), built_ms, received_ms);
  return reply;
}

// Whether the tasking message comes at its time (returns why not). Pre-copy: the stream pauses
// after the last round; the layout changes only then.
std::string IncomingMigration::take_tasking_turn(const rpc::TaskingRequest& req, bool* prepared) {
  std::unique_lock<std::mutex> lock(mu_);
  if (strategy_.sends_rounds()) {
    if (state_ == rpc::MIGRATION_ROUNDS)
      cv_.wait_for(lock, std::chrono::milliseconds(kReceiveWaitMs),
                   [&] { return rounds_received_ >= req.last_round() && last_round_seen_; });
    if (state_ != rpc::MIGRATION_ROUNDS || !last_round_seen_)
      return "the rounds did not arrive (" + name_of(state_) + ")";
  } else if (state_ != rpc::MIGRATION_OFFERED && state_ != rpc::MIGRATION_PREPARED) {
    return "unexpected tasking message (" + name_of(state_) + ")";
  }
  *prepared = state_ == rpc::MIGRATION_PREPARED;
  state_ = rpc::MIGRATION_BUILDING;
  return "";
}

// The address space as the tasking message describes it: pre-copy relays out the first layout;
// an early layout that did not change is adopted; otherwise the task is built anew.
void IncomingMigration::build(const rpc::TaskingRequest& req, bool prepared) {
  if (!image_.ParseFromString(req.image()))
    fail_as(Error::Kind::kBadInput, "the tasking message is corrupted");
  image::validate(image_, image_.pages_file().size());
  if (node_.faults.fail_restore) fail("restore failed (test fault)");
  const bool lazy = strategy_.has_lazy_phase();
  if (strategy_.sends_rounds()) {
    AddressRanges retained = ranges_of(req.retained()), discard = ranges_of(req.discard());
    check_retained(retained, prelim_, image_);
    check_retained(discard, prelim_, image_);
    worker_->run([&] { builder_->relayout(image_, retained, discard); });
  } else if (prepared && layout_of(prelim_) == layout_of(image_)) {
    // Unchanged since it was laid out: only the rest of the description is new.
    cr::BuildOptions options = build_options(lazy);
    worker_->run([&] { builder_->adopt(image_, options); });
  } else {
    if (prepared) {
      spdlog::info("task {} changed its layout since it was laid out here: building anew",
                   task_.id());
      worker_->run([&] { builder_.reset(); });
    }
    cr::BuildOptions options = build_options(lazy);
    worker_->run([&] { builder_ = std::make_unique<cr::ProcessBuilder>(image_, options); });
  }
}

// Flushing: no page stream; the pages are in the page store, which must be the one we know, and
// hold the image whose tags came with this (authenticated) message, signed with the session's
// key.
void IncomingMigration::open_page_store(const rpc::TaskingRequest& req) {
  std::string dir = std::filesystem::weakly_canonical(req.store_dir()).string();
  std::string root = std::filesystem::weakly_canonical(node_.cfg.page_store).string();
  if (dir.compare(0, root.size() + 1, root + "/") != 0)
    fail_as(Error::Kind::kBadInput, "the flushed image {} is not in this node's page store {}",
            req.store_dir(), root);
  store_dir_ = dir;
  image::ImageKey store_key = image::derive_image_key(key_.data(), key_.size());
  image::LoadedImage stored = image::load_image(dir, store_key);
  if (stored.image.image_id() != image_.image_id() ||
      stored.image.pages_file().SerializeAsString() != image_.pages_file().SerializeAsString())
    fail_as(Error::Kind::kBadInput, "the page store holds another image than the one announced");
  store_ = std::make_unique<transfer::StoreLazySource>(
      image_, store_key, std::move(stored.pages_fd), anonymous_ranges(image_));
  // What cannot come lazily (written pages of file mappings, shared memory, unlinked files) is
  // put in place now.
  store_->place_others([&](const image::PageTarget& t, const char* data, size_t len) {
    builder_->place(t, data, len);
  });
  std::lock_guard<std::mutex> lock(mu_);
  state_ = rpc::MIGRATION_RECEIVED;
}

// Laid out: the page stream may pour in now. Waits for the pages of the freeze; returns why
// they did not come.
std::string IncomingMigration::await_frozen_pages() {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == rpc::MIGRATION_BUILDING) state_ = rpc::MIGRATION_RECEIVING;
  cv_.notify_all();
  bool done = cv_.wait_for(lock, std::chrono::milliseconds(kReceiveWaitMs),
                           [&] { return state_ != rpc::MIGRATION_RECEIVING; });
  if (!done) return "the page stream did not complete";
  if (state_ == rpc::MIGRATION_FAILED) return "page stream failed: " + error_;
  if (state_ != rpc::MIGRATION_RECEIVED) return "the migration was " + name_of(state_);
  return "";
}

// From here faults of the process wait for the pager (also those of finish()).
void IncomingMigration::start_pager() {
  AddressRanges regions;
  UniqueFd uffd;
  worker_->run([&] { uffd = builder_->take_userfaultfd(&regions); });
  // ferry-init keeps a copy: if this ferryd dies before every page is here, the task's faults
  // wait (instead of the kernel filling them with zeros) until the next ferryd kills it
  // (adopt_tasks).
  if (node_.init.active()) node_.init.keep(lazy_memory_name(), uffd.get(), 0);
  AddressRanges ranges;
  for (auto& [s, e] : regions) ranges.push_back({s, e});
  auto pager = std::make_unique<transfer::LazyPager>(std::move(uffd), builder_->pid(), ranges);
  std::string id = task_.id();
  LocalTasks& tasks = node_.tasks;
  pager->set_on_fail([&tasks, id](const std::string& why) {
    tasks.set_exit_reason(id, "killed by ferry: its pages could not come (" + why + ")");
  });
  std::lock_guard<std::mutex> lock(mu_);
  pager_ = std::move(pager);
  if (store_) {
    store_->set_pager(pager_.get());
    pager_->start(store_.get());
  }
  cv_.notify_all();  // the stream thread goes on into the lazy phase
}

rpc::CommitReply IncomingMigration::commit(const rpc::CommitRequest& req) {
  rpc::CommitReply reply;
  std::lock_guard<std::mutex> lock(mu_);
  if (released(state_)) {  // a repeated Commit
    reply.set_running(true);
    return reply;
  }
  if (state_ != rpc::MIGRATION_READY) {
    reply.set_reason("the task is not ready here (" + name_of(state_) + ")");
    return reply;
  }
  pid_t pid = built_->pid();
  try {
    refill_channel_pipes(req.channels());
  } catch (const std::exception& e) {
    reply.set_reason(e.what());
    return reply;
  }
  // From its release until the table has it, the reaper leaves an ended child alone: a task
  // that ends at once (its channel ended while it travelled) would lose its exit status, and
  // stay "running" for ever.
  StartingTask starting(node_.tasks);
  // Durably "released" before it is: a source in doubt never resumes its original while this
  // copy may run, not even if this ferryd dies and another one answers.
  node_.journal.record(id_);
  worker_->run([&] {
    built_->release();
    built_.reset();
  });
  rpc::TaskInfo t = task_;
  t.set_node(node_.name());
  t.set_pid(pid);
  t.set_state(rpc::TASK_RUNNING);
  t.set_epoch(t.epoch() + 1);
  // The relay before the table entry: a task reaped at once drains it (see run_here).
  node_.relay.attach(t.id(), t.home(), std::move(output_read_), req.log_offset());
  channel_pipes_.task_side.clear();
  node_.channels.start(t.id(), t.channel_ends(), channel_pipes_, &req.channels());
  control_.task_side.reset();
  node_.control.serve(t.id(), control_, req.control_reply());
  if (node_.faults.slow_arrival_entry) await_end_unreaped(pid, 3000);
  node_.tasks.add(t);
  output_write_.reset();
  since_commit_.emplace();
  // Pages still arriving: the task runs, the migration is not over yet.
  state_ = pager_ && !pager_->finished() ? rpc::MIGRATION_PULLING : rpc::MIGRATION_RUNNING;
  cv_.notify_all();  // (await_pages)
  if (store_) start_filler();
  spdlog::info("task {} now runs here as pid {}", t.id(), pid);
  node_.announce_arrival(t, source_node_);
  reply.set_running(true);
  reply.set_pid(pid);
  return reply;
}

// Flushing: the rest is loaded from the page store in the background; the source is done.
void IncomingMigration::start_filler() {
  std::shared_ptr<IncomingMigration> self = shared_from_this();
  filler_ = std::thread([self] {
    std::string error;
    try {
      self->store_->fill_all();
      self->lazy_bytes_ = self->store_->bytes_loaded();
      self->lazy_pages_ = self->lazy_bytes_ / 4096;
      self->lazy_faults_ = self->pager_->faults();
    } catch (const std::exception& e) {
      error = e.what();
    }
    self->end_lazy_phase(error);
  });
}

}  // namespace ferry::node
