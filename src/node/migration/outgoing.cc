// The source side of a migration up to Commit: the checks, the offer, the layout and the rounds
// while the task runs, the freeze, the tasking message and the pages sent while frozen.
#include "node/migration/outgoing.h"

#include <fcntl.h>
#include <signal.h>

#include <chrono>
#include <cstring>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "cr/resources/cgroups.h"
#include "cr/resources/files/sockets.h"
#include "cr/resources/map_check.h"
#include "cr/resources/registers.h"
#include "cr/resources/vm_flags.h"
#include "cr/restore.h"
#include "image/image_files.h"
#include "node/file_checks.h"
#include "transfer/dirty_tracker.h"
#include "transfer/frame_auth.h"
#include "transfer/strategy.h"
#include "util/proc.h"

namespace ferry::node {
namespace {

uint64_t status_kb(pid_t pid, const char* key) {
  auto st = proc::try_read_file(proc::path(pid, "status"));
  if (!st) return 0;
  size_t n = std::strlen(key);
  for (auto& line : proc::split(*st, '\n'))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':')
      return proc::parse_u64(proc::split_ws(line.substr(n + 1)).at(0));
  return 0;
}

// A page stream that makes no progress for this long is broken.
constexpr int kStreamTimeoutMs = 5000;

std::string new_session_id() {
  transfer::Token t = transfer::random_token();
  return image::hex(std::string(reinterpret_cast<char*>(t.data()), 8));
}

// Before the destination accepted, only its refusal or its silence is a refusal; anything else
// (the task's files cannot be described, a bad answer) aborts.
rpc::MigrationOutcome outcome_before_acceptance(Error::Kind kind) {
  return kind == Error::Kind::kRefused || kind == Error::Kind::kPeerDown ? rpc::OUTCOME_REFUSED
                                                                         : rpc::OUTCOME_ABORTED;
}

void add_ranges(const AddressRanges& ranges,
                google::protobuf::RepeatedPtrField<rpc::MemRange>* out) {
  for (auto& r : ranges) {
    rpc::MemRange* m = out->Add();
    m->set_start(r.start);
    m->set_end(r.end);
  }
}

}  // namespace

OutgoingMigration::OutgoingMigration(NodeContext& node, const rpc::MigrateRequest& req, Emit emit)
    : node_(node), req_(req), emit_(std::move(emit)), id_(req.task_id()), to_(req.to()) {
  rep_.set_task(id_);
  rep_.set_from(node_.name());
  rep_.set_to(to_);
  rep_.set_strategy(req.strategy().empty() ? transfer::default_strategy().name() : req.strategy());
  tasking_ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(300));
}

OutgoingMigration::~OutgoingMigration() {
  // (Every way out stops these already; a throw that escaped run() must not leave them behind.)
  stop_server();
  stop_tasking();
}

void OutgoingMigration::run() {
  try {
    check_request();
    offer();
  } catch (const Error& e) {
    return finish(outcome_before_acceptance(e.kind()), e.what());
  }
  try {
    open_page_stream();
    if (strategy_->sends_rounds())
      run_rounds();
    else if (!strategy_->stores_pages())
      lay_out_early();
    freeze();
    check_map_meanwhile();
    send_frozen_pages();
    if (strategy_->lazy_from_source()) start_page_server();
  } catch (const std::exception& e) {
    return fail_before_commit(e);
  }
  mark("pages");
  progress(rpc::PHASE_PAGES, rep_.bytes_frozen(), rep_.bytes_frozen());
  uint64_t log_offset = 0;
  try {
    log_offset = drain_output();
    mark("drain");
    await_ready();
  } catch (const std::exception& e) {
    stop_tasking();
    return give_up(rpc::OUTCOME_ABORTED, e.what(), true);
  }
  mark("restore");
  if (!commit(log_offset)) return;
  if (!serve_after_commit() || !collect_destination_account()) return;  // lost
  rep_.set_bytes_sent((sender_ ? sender_->bytes_sent() : 0) +
                      (strategy_->stores_pages() ? rep_.bytes_frozen() : 0));
  rep_.set_pages_sent(rep_.pages_upfront() + rep_.pages_frozen() + rep_.pages_on_demand() +
                      rep_.pages_pushed());
  finish(rpc::OUTCOME_MIGRATED);
}

void OutgoingMigration::check_request() {
  using K = Error::Kind;
  strategy_ = transfer::find_strategy(rep_.strategy());
  if (!strategy_)
    fail_as(K::kRefused, "unknown strategy '{}' ({})", rep_.strategy(), transfer::strategy_names());
  const std::string& tracking = req_.dirty_tracking();
  if (!tracking.empty() && !strategy_->sends_rounds())
    fail_as(K::kRefused, "--dirty-tracking applies to pre-copy only");
  if (!tracking.empty() && tracking != "uffd" && tracking != "hash")
    fail_as(K::kRefused, "unknown dirty tracking '{}' (uffd, hash)", tracking);
  if (req_.max_rounds() > transfer::kMaxPrecopyRounds)
    fail_as(K::kRefused, "at most {} pre-copy rounds (asked for {})", transfer::kMaxPrecopyRounds,
            req_.max_rounds());
  if (to_ == node_.name()) fail_as(K::kRefused, "task {} already runs on {}", id_, to_);
  if (!node_.peers.known(to_)) fail_as(K::kRefused, "unknown node '{}'", to_);
  if (!node_.peers.up(to_)) fail_as(K::kRefused, "node {} is down", to_);
  if (std::string why = node_.tasks.begin_migration(id_); !why.empty())
    fail_as(K::kRefused, "{}", why);
  info_ = node_.tasks.get(id_)->info;
  pid_ = info_.pid();
  migrating_.emplace(node_, id_, pid_);
  node_.channels.check_movable(id_, pid_);
  spdlog::info("migration of {} to {} begins ({})", id_, to_, rep_.strategy());
  // (A snapshot's recordings of the task's channels still on go along with its ends.)
}

void OutgoingMigration::fill_offer(rpc::OfferRequest& offer) {
  offer.set_session_id(session_);
  *offer.mutable_task() = info_;
  offer.set_memory_bytes(status_kb(pid_, "VmSize") * 1024);
  rss_bytes_ = (status_kb(pid_, "RssAnon") + status_kb(pid_, "RssShmem")) * 1024;
  offer.set_rss_bytes(rss_bytes_);
  offer.set_strategy(rep_.strategy());
  key_ = transfer::random_key();
  offer.set_data_key(std::string(reinterpret_cast<char*>(key_.data()), key_.size()));
  offer.set_frame_format(node_.faults.frame_format());
  offer.set_xcr0(cr::local_xcr0());
  offer.set_xstate_size(static_cast<uint32_t>(cr::local_xstate_size()));
  offer.set_policy(req_.policy());
  offer.set_task_demand(req_.task_demand());
  offer.set_source_load(req_.source_load());
  for (auto& line : proc::split(proc::try_read_file(proc::path(pid_, "cgroup")).value_or(""), '\n'))
    if (!line.empty()) offer.add_cgroups(line);
  for (auto& line : cr::own_cgroup_lines()) offer.add_source_cgroups(line);
  try {
    for (auto& a : cr::bound_addresses(pid_)) offer.add_bound_addresses(a);
  } catch (const std::exception& e) {
    fail_as(Error::Kind::kRefused, "task {}: {}", id_, e.what());
  }
  if (std::string locks = held_locks(pid_); !locks.empty())
    fail_as(Error::Kind::kRefused, "task {}: {}", id_, locks);
  try {
    for (auto& f : file_checks(pid_)) *offer.add_files() = f;
  } catch (const std::exception& e) {
    fail("cannot describe the task's files: {}", e.what());
  }
}

void OutgoingMigration::offer() {
  progress(rpc::PHASE_OFFER, 0, 0);
  session_ = new_session_id();
  rpc::OfferRequest offer;
  fill_offer(offer);
  rpc::OfferReply accepted;
  auto ctx = deadline_ms(10000);
  grpc::Status s = node_.peers.stub(to_).Offer(ctx.get(), offer, &accepted);
  if (!s.ok())
    fail_as(Error::Kind::kPeerDown, "node {} does not answer: {}", to_, s.error_message());
  if (!accepted.accepted()) {
    rep_.set_refused_by(to_);
    throw Error(Error::Kind::kRefused, accepted.reason());
  }
  state_ = State::kOffered;
  // From here the reaper leaves the process to this session.
  held_.emplace(node_.tasks, pid_);
  if (node_.faults.kill_task_before_freeze) ::kill(pid_, SIGTERM);
  if (accepted.token().size() != token_.size()) {
    abort_remote("bad token");
    fail_as(Error::Kind::kBadInput, "bad token from {}", to_);
  }
  // (A destination of an earlier build accepts without looking; its tags would not match ours.)
  if (!transfer::frames_match(node_.faults.frame_format(), accepted.frame_format())) {
    abort_remote("another ferry build");
    rep_.set_refused_by(to_);
    fail_as(Error::Kind::kRefused,
            "node {} runs another ferry build (page frames of format {} there, {} here)", to_,
            accepted.frame_format(), node_.faults.frame_format());
  }
  std::memcpy(token_.data(), accepted.token().data(), token_.size());
  data_address_ = accepted.data_address();
}

void OutgoingMigration::open_page_stream() {
  if (strategy_->stores_pages()) return;  // the pages go through the page store
  UniqueFd sock = transfer::connect_stream(data_address_, token_, kStreamTimeoutMs);
  sender_ = std::make_unique<transfer::StreamSender>(std::move(sock), key_);
  if (node_.faults.slow_stream) sender_->set_frame_delay_ms(25);
}

// The destination lays out the address space from a first description, while the task still
// runs here.
void OutgoingMigration::prepare_at_destination(image::Image& prelim) {
  prelim.set_format_version(image::kFormatVersion);
  prelim.set_image_id(image::new_image_id());
  prelim.mutable_pages_file()->set_size(image::kPagesHeaderSize);
  rpc::TaskingRequest prepare;
  prepare.set_session_id(session_);
  prepare.set_image(prelim.SerializeAsString());
  rpc::TaskingReply prepared;
  auto ctx = deadline_ms(60000);
  grpc::Status s = node_.peers.stub(to_).Prepare(ctx.get(), prepare, &prepared);
  if (!s.ok())
    fail_as(Error::Kind::kPeerDown, "node {} does not answer: {}", to_, s.error_message());
  if (!prepared.ready()) fail("{}", prepared.reason());
}

// Eager-all, eager-dirty, copy-on-reference: the layout as /proc shows it (no stop), so that the
// freeze need not wait for the address space to be built.
void OutgoingMigration::lay_out_early() {
  progress(rpc::PHASE_DESCRIBE, 0, rss_bytes_);
  image::Image layout = cr::describe_layout(pid_);
  prepare_at_destination(layout);
}

// Pre-copy: describe the running task in a short stop, start tracking its writes, and send
// rounds while it runs.
void OutgoingMigration::run_rounds() {
  progress(rpc::PHASE_DESCRIBE, 0, rss_bytes_);
  const std::string& asked = req_.dirty_tracking();
  image::Image prelim;
  UniqueFd uffd;
  {
    cr::FrozenProcess first = cr::freeze_and_describe(pid_);
    if (asked != "hash" && transfer::uffd_dirty_tracking_available()) {
      try {
        uffd = first.make_userfaultfd(O_CLOEXEC | O_NONBLOCK);
      } catch (const std::exception& e) {
        if (asked == "uffd") throw;
        spdlog::info("pre-copy of {}: no userfaultfd tracking ({}); hashing pages", id_, e.what());
      }
    } else if (asked == "uffd") {
      first.resume();
      fail_as(Error::Kind::kRefused,
              "this kernel has no userfaultfd write-protection (WP_ASYNC, PAGEMAP_SCAN)");
    }
    prelim = first.image();
    rep_.set_paused_ms(first.frozen_us() / 1000.0);
    first.resume();
  }
  AddressRanges tracked;
  for (auto& v : prelim.memory().vmas())
    if (v.kind() == image::Vma::ANON_PRIVATE && !(v.vm_flags() & cr::kVmGrowsDown))
      tracked.push_back({v.start(), v.end()});
  std::unique_ptr<transfer::DirtyTracker> tracker =
      uffd ? transfer::make_uffd_tracker(pid_, std::move(uffd), tracked)
           : transfer::make_hash_tracker(pid_, tracked);
  rep_.set_dirty_tracking(tracker->name());
  rounds_ = std::make_unique<transfer::PrecopySource>(pid_, std::move(tracker), tracked, *sender_);
  prepare_at_destination(prelim);
  transfer::PrecopyConfig config;
  if (req_.max_freeze_ms()) config.max_freeze_ms = req_.max_freeze_ms();
  if (req_.max_rounds()) config.max_rounds = req_.max_rounds();
  rounds_->run_rounds(config, [&](const transfer::RoundStats& r) {
    rpc::PrecopyRound* pr = rep_.add_round_list();
    pr->set_round(r.round);
    pr->set_pages(r.pages);
    pr->set_bytes(r.bytes);
    pr->set_ms(r.ms);
    rep_.set_bytes_upfront(rep_.bytes_upfront() + r.bytes);
    rep_.set_pages_upfront(rep_.pages_upfront() + r.pages);
    progress(rpc::PHASE_ROUNDS, rep_.bytes_upfront(), rss_bytes_);
  });
  rep_.set_rounds(static_cast<uint32_t>(rounds_->rounds().size()));
}

void OutgoingMigration::freeze() {
  progress(rpc::PHASE_FREEZE, 0, rss_bytes_);
  tasking_.set_session_id(session_);
  cr::FreezeOptions options;
  if (rounds_) options.ferry_tracks_writes = true;
  // Stopped, not described yet: the channel ends stop before the dump, so that what is in the
  // task's pipes then is what the image holds and what the ends' states count.
  options.on_stopped = [this] {
    if (rounds_) rounds_->at_freeze();
    hold_channels();
  };
  since_mark_.restart();
  frozen_.emplace(cr::freeze_and_describe(pid_, options));
  state_ = State::kFrozen;
  // The checks before the freeze, and the frozen part.
  double frozen_ms = static_cast<double>(frozen_->frozen_us()) / 1000.0;
  freeze_parts_.push_back({"checks", since_mark_.elapsed_ms() - frozen_ms});
  freeze_parts_.push_back({"describe", frozen_ms});
  since_mark_.restart();
  if (sender_) frozen_from_ = sender_->bytes_sent();
}

// The frozen task's smaps read again beside the page transfer and the restore (map_check.h says
// why): 12 ms for 1 GiB. With a CPU to spare it overlaps them; on a 2-vCPU VM whose CPUs the
// transfer keeps busy it added about 6 ms to a 1 GiB pre-copy freeze either way.
void OutgoingMigration::check_map_meanwhile() {
  image::Memory recorded;
  *recorded.mutable_vmas() = frozen_->image().memory().vmas();
  map_checked_ = std::async(std::launch::async, [pid = pid_, recorded = std::move(recorded),
                                                 tracks_writes = rounds_ != nullptr] {
    cr::check_frozen_task_has_the_recorded_map(pid, recorded, tracks_writes);
  });
}

void OutgoingMigration::send_tasking(const image::Image& img) {
  tasking_.set_image(img.SerializeAsString());
  tasking_call_ = std::async(std::launch::async, [this, request = tasking_] {
    return node_.peers.stub(to_).Tasking(&tasking_ctx_, request, &ready_);
  });
}

// The remote tasking message goes first (but for flushing, whose message names the pages in the
// store), so that the destination lays out the address space while the pages are being sent.
void OutgoingMigration::send_frozen_pages() {
  cr::PageSelection selection;
  if (rounds_) {
    transfer::PrecopyFinal fin = rounds_->finish(frozen_->image());
    add_ranges(fin.retained, tasking_.mutable_retained());
    add_ranges(fin.discard, tasking_.mutable_discard());
    tasking_.set_last_round(rep_.rounds() ? rep_.rounds() - 1 : 0);
    selection.skip_zero = false;  // a page that became zero must become zero there too
    selection.only = fin.only;
    // The stream pauses here until the destination has the final layout.
    sender_->send_control(transfer::frame_flags::kRoundEnd, tasking_.last_round(), 1);
  } else {
    strategy_->select_frozen_pages(frozen_->image(), &selection);
  }
  if (strategy_->stores_pages()) return flush_to_store(selection);
  // A description without page data, as the destination's builder reads it.
  image::Image img = frozen_->image();
  img.set_format_version(image::kFormatVersion);
  img.set_image_id(image::new_image_id());
  img.mutable_pages_file()->set_size(image::kPagesHeaderSize);
  send_tasking(img);
  frozen_->dump_pages(*sender_, selection);
  sender_->finish(frozen_->image().mutable_pages_file());
  rep_.set_bytes_frozen(sender_->bytes_sent() - frozen_from_);
  rep_.set_pages_frozen(frozen_->image().stats().pages_written());
}

// Flushing: the pages go to the page store as an image of their own; the message names it.
void OutgoingMigration::flush_to_store(const cr::PageSelection& selection) {
  store_.path = node_.cfg.page_store + "/" + session_;
  std::filesystem::create_directories(node_.cfg.page_store);
  image::ImageWriter writer(store_.path, image::derive_image_key(key_.data(), key_.size()));
  frozen_->dump_pages(writer.pages(), selection);
  image::Image& img = frozen_->image();
  writer.commit(img, false);
  tasking_.set_store_dir(store_.path);
  rep_.set_bytes_frozen(img.pages_file().size() - image::kPagesHeaderSize);
  rep_.set_pages_frozen(img.stats().pages_written());
  send_tasking(img);
}

// Eager-dirty, copy-on-reference: the page server answers the destination's faults (and pushes
// the rest) from the frozen original, from the end of the frozen pages until Commit's aftermath.
void OutgoingMigration::start_page_server() {
  AddressRanges lazy;
  for (auto& v : frozen_->image().memory().vmas())
    if (v.kind() == image::Vma::ANON_PRIVATE) lazy.push_back({v.start(), v.end()});
  server_ = std::make_unique<transfer::PageServer>(pid_, *sender_, lazy,
                                                   frozen_->image().memory().pages());
  node_.serving.add(session_);
  server_done_ = std::async(std::launch::async, [this] {
    std::string error = serve_lazy_pages();
    node_.serving.remove(session_);
    return error;
  });
}

// Everything the task wrote before the freeze reaches its home first.
uint64_t OutgoingMigration::drain_output() {
  return node_.relay.drain(id_, 5000);
}

// The task's channel ends stop here (resumed by back_out()); their state goes with Commit.
void OutgoingMigration::hold_channels() {
  channels_held_ = true;
  for (auto& h : node_.channels.hold(id_, pid_)) *channel_handoffs_.Add() = std::move(h);
}

// The destination has built the task and holds it.
void OutgoingMigration::await_ready() {
  progress(rpc::PHASE_RESTORE, rep_.bytes_frozen(), rep_.bytes_frozen());
  if (map_checked_.valid()) map_checked_.get();
  grpc::Status s = tasking_call_.get();
  if (!s.ok())
    fail_as(Error::Kind::kPeerDown, "node {} does not answer: {}", to_, s.error_message());
  if (!ready_.ready()) throw Error(Error::Kind::kRefused, ready_.reason());
  state_ = State::kReady;
  rep_.set_restore_ms(ready_.restore_ms());
  rep_.set_transfer_ms(ready_.stream_ms());
}

}  // namespace ferry::node
