#include "node/channels/channel_ends.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include <spdlog/spdlog.h>

#include "cr/provided.h"
#include "node/channels/message_socket.h"
#include "node/faults.h"
#include "transfer/frame_auth.h"
#include "util/error.h"

namespace ferry::node {
namespace {

// The node's side of a channel's pipe: larger than a pipe's default, for throughput.
constexpr int kPipeBytes = 1 << 20;

}  // namespace

ChannelPipes& ChannelPipes::operator=(ChannelPipes&& other) noexcept {
  if (this == &other) return *this;
  forget();
  task_side = std::move(other.task_side);
  node_side = std::move(other.node_side);
  task_inodes = std::move(other.task_inodes);
  provided = std::move(other.provided);
  other.provided.clear();
  return *this;
}

void ChannelPipes::forget() {
  for (uint64_t inode : provided) cr::remove_provided(inode);
  provided.clear();
}

ChannelPipes ChannelEnds::make_pipes(const ChannelEndSpecs& ends) {
  ChannelPipes pipes;
  for (auto& e : ends) {
    if (e.messages()) {
      MessagePair pair = make_message_pair(e.writer());
      pipes.task_side[e.fd()] = std::move(pair.task_side);
      pipes.node_side[e.fd()] = std::move(pair.node_side);
      pipes.task_inodes[e.fd()] = pair.task_inode;
      cr::add_provided_channel(pair.task_inode, e.fd());
      pipes.provided.push_back(pair.task_inode);
      continue;
    }
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
    UniqueFd r(p[0]), w(p[1]);
    ::fcntl(p[1], F_SETPIPE_SZ, kPipeBytes);
    struct stat st {};
    if (::fstat(p[0], &st) != 0) fail_errno(errno, "fstat of a channel's pipe");
    cr::add_provided_channel(st.st_ino, e.fd());
    pipes.provided.push_back(st.st_ino);
    pipes.task_side[e.fd()] = e.writer() ? std::move(w) : std::move(r);
    pipes.node_side[e.fd()] = e.writer() ? std::move(r) : std::move(w);
  }
  return pipes;
}

void ChannelEnds::start(const std::string& task_id, const ChannelEndSpecs& ends,
                        ChannelPipes& pipes, const ChannelHandoffs* handoffs) {
  auto handoff_of = [&](const rpc::ChannelEnd& e) -> const rpc::ChannelHandoff* {
    if (handoffs)
      for (auto& h : *handoffs)
        if (h.job() == e.job() && h.channel() == e.channel() && h.writer() == e.writer()) return &h;
    return nullptr;
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    Ends& mine = by_task_[task_id];
    mine.provided.insert(mine.provided.end(), pipes.provided.begin(), pipes.provided.end());
    pipes.provided.clear();
    for (auto& e : ends) {
      UniqueFd fd = std::move(pipes.node_side.at(e.fd()));
      auto inode = pipes.task_inodes.find(e.fd());
      uint64_t task_inode = inode == pipes.task_inodes.end() ? 0 : inode->second;
      if (e.writer()) {
        auto w = std::make_shared<WriterEnd>(e, task_id, std::move(fd), task_inode, links_,
                                             handoff_of(e));
        w->start();
        mine.writers.push_back(std::move(w));
      } else {
        auto r = std::make_shared<ReaderEnd>(e, task_id, links_.node, std::move(fd), task_inode,
                                             handoff_of(e));
        if (marker_hook_) r->set_marker_hook(marker_hook_);
        readers_[key_of(e)] = r;
        mine.readers.push_back(std::move(r));
      }
    }
  }
  if (handoffs) drop_stale_recordings(task_id);
}

ChannelEnds::Ends ChannelEnds::ends_of(const std::string& task_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_task_.find(task_id);
  return it == by_task_.end() ? Ends() : it->second;
}

void ChannelEnds::check_movable(const std::string& task_id, pid_t pid) {
  Ends ends = ends_of(task_id);
  for (auto& r : ends.readers) r->check_movable(pid);
}

void ChannelEnds::set_snapshot_hooks(ReaderEnd::MarkerHook hook, Active active) {
  std::lock_guard<std::mutex> lock(mu_);
  marker_hook_ = std::move(hook);
  active_ = std::move(active);
}

bool ChannelEnds::carries_recording(const std::string& task_id, uint64_t marker) {
  Ends ends = ends_of(task_id);
  for (auto& r : ends.readers)
    if (r->carries_recording(marker)) return true;
  return false;
}

// Looked at once the ends are in place: a snapshot that ends after this drops their recordings
// itself (drop_recordings), one that ended before is seen to have.
void ChannelEnds::drop_stale_recordings(const std::string& task_id) {
  Active active;
  {
    std::lock_guard<std::mutex> lock(mu_);
    active = active_;
  }
  Ends ends = ends_of(task_id);
  for (auto& r : ends.readers)
    for (uint64_t m : r->recordings())
      if (!active || !active(m)) r->finish_recording(m);
}

std::vector<rpc::ChannelCut> ChannelEnds::cut(const std::string& task_id, pid_t pid,
                                              uint64_t marker,
                                              std::vector<std::shared_ptr<ReaderEnd>>* ended,
                                              std::vector<WriterEnd::Unsent>* unsent) {
  Ends ends = ends_of(task_id);
  std::vector<rpc::ChannelCut> out;
  for (auto& w : ends.writers) {
    WriterEnd::Unsent u;
    out.push_back(w->cut(marker, pid, &u));
    if (out.back().unsent_bytes() > 0 || out.back().unsent_messages() > 0)
      unsent->push_back(std::move(u));
  }
  for (auto& r : ends.readers) {
    bool done = false;
    out.push_back(r->start_recording(marker, pid, &done));
    if (done) ended->push_back(r);
  }
  return out;
}

void ChannelEnds::drop_recordings(uint64_t marker) {
  std::vector<std::shared_ptr<ReaderEnd>> readers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, r] : readers_) readers.push_back(r);
  }
  for (auto& r : readers) r->finish_recording(marker);
}

std::vector<rpc::ChannelHandoff> ChannelEnds::hold(const std::string& task_id, pid_t pid) {
  Ends ends = ends_of(task_id);
  std::vector<rpc::ChannelHandoff> out;
  for (auto& w : ends.writers) out.push_back(w->hold());
  for (auto& r : ends.readers) out.push_back(r->hold(pid));
  return out;
}

void ChannelEnds::resume(const std::string& task_id, pid_t pid) {
  Ends ends = ends_of(task_id);
  for (auto& w : ends.writers) w->resume(pid);
  for (auto& r : ends.readers) r->resume();
}

void ChannelEnds::moved(const std::string& task_id, const std::string& node) {
  Ends ends;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_task_.find(task_id);
    if (it == by_task_.end()) return;
    ends = std::move(it->second);
    by_task_.erase(it);
  }
  // A reader end stays as a note of where the task went, for writers that come here still.
  for (auto& r : ends.readers) r->moved(node);
  for (uint64_t inode : ends.provided) cr::remove_provided(inode);
}

void ChannelEnds::task_ended(const std::string& task_id) {
  std::vector<uint64_t> provided;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_task_.find(task_id);
    if (it == by_task_.end()) return;
    provided.swap(it->second.provided);
  }
  for (uint64_t inode : provided) cr::remove_provided(inode);
}

void ChannelEnds::serve(grpc::ServerContext& ctx, ChannelServerStream& stream) {
  rpc::ChannelFrame hello;
  if (!stream.Read(&hello)) return;
  std::shared_ptr<ReaderEnd> end = reader(hello.job(), hello.channel());
  if (!end) {
    rpc::ChannelReply r;
    r.set_kind(rpc::ChannelReply::NOT_HERE);
    stream.Write(r);
    return;
  }
  // A writer that asks for a data link gets one when this node has a data listener.
  ReaderEnd::LinkOffer offer{&rendezvous_, links_.link_address, links_.frame_format};
  bool link = hello.link_key().size() == sizeof(transfer::Key) && !links_.link_address.empty();
  if (link && !transfer::frames_match(links_.frame_format, hello.frame_format())) {
    spdlog::warn(
        "channel {}#{}: the writer's node {} runs another ferry build (frame format {}, here "
        "{}): no link, the items come on the stream",
        hello.job(), hello.channel(), hello.from_node(), hello.frame_format(), links_.frame_format);
    link = false;
  }
  end->serve(ctx, stream, hello, link ? &offer : nullptr);
}

std::shared_ptr<ReaderEnd> ChannelEnds::reader(const std::string& job, uint32_t channel) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = readers_.find({job, channel, false});
  return it == readers_.end() ? nullptr : it->second;
}

std::vector<rpc::ChannelEndStat> ChannelEnds::stats(const std::string& job) {
  std::vector<std::shared_ptr<WriterEnd>> writers;
  std::vector<std::shared_ptr<ReaderEnd>> readers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [task, ends] : by_task_) {
      for (auto& w : ends.writers) writers.push_back(w);
      for (auto& r : ends.readers) readers.push_back(r);
    }
  }
  std::vector<rpc::ChannelEndStat> out;
  for (auto& w : writers) {
    rpc::ChannelEndStat s = w->stat();
    if (job.empty() || s.job() == job) out.push_back(s);
  }
  for (auto& r : readers) {
    rpc::ChannelEndStat s = r->stat();
    if (job.empty() || s.job() == job) out.push_back(s);
  }
  return out;
}

}  // namespace ferry::node
