#include "channel_stress_node.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <stdexcept>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "channel_task_io.h"
#include "node/channels/message_socket.h"
#include "transfer/frame_auth.h"
#include "transfer/page_stream.h"
#include "util/error.h"

namespace ferry::node {

// Only what channel ends use of the Node service, as ferryd serves it (ChannelEnds::serve): the
// reader's end here serves the writer's stream, and offers a link.
class StressNode::Service final : public rpc::Node::Service {
 public:
  explicit Service(StressNode& node) : node_(node) {}

  grpc::Status ChannelStream(grpc::ServerContext* ctx, ChannelServerStream* stream) override {
    rpc::ChannelFrame hello;
    if (!stream->Read(&hello)) return grpc::Status::OK;
    std::shared_ptr<ReaderEnd> end = node_.reader();
    if (!end) {
      rpc::ChannelReply r;
      r.set_kind(rpc::ChannelReply::NOT_HERE);
      stream->Write(r);
      return grpc::Status::OK;
    }
    ReaderEnd::LinkOffer offer{&node_.rendezvous_, node_.link_address_, transfer::kFrameFormat};
    const bool link = hello.link_key().size() == sizeof(transfer::Key);
    try {
      end->serve(*ctx, *stream, hello, link ? &offer : nullptr);
    } catch (const std::exception& e) {
      return grpc::Status(grpc::StatusCode::INTERNAL, e.what());
    }
    return grpc::Status::OK;
  }

 private:
  StressNode& node_;
};

StressNode::StressNode(std::string name) : name_(std::move(name)) {
  service_ = std::make_unique<Service>(*this);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(1 << 30);
  builder.SetMaxSendMessageSize(1 << 30);
  builder.RegisterService(service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port == 0) throw std::runtime_error("node " + name_ + ": no gRPC port");
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(1 << 30);
  args.SetMaxSendMessageSize(1 << 30);
  stub_ = rpc::Node::NewStub(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                                       grpc::InsecureChannelCredentials(), args));

  data_listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(data_listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(data_listener_.get(), 16) != 0 ||
      ::getsockname(data_listener_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw std::runtime_error("node " + name_ + ": no data listener");
  link_address_ = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
  acceptor_ = std::thread([this] { accept_links(); });
}

StressNode::~StressNode() {
  shut_down();
}

void StressNode::shut_down() {
  if (stopping_.exchange(true)) return;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  acceptor_.join();
}

// As ferryd's data listener: a connection's token says which reader end waits for it.
void StressNode::accept_links() {
  while (!stopping_) {
    pollfd p{data_listener_.get(), POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    UniqueFd sock(::accept4(data_listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!sock) continue;
    try {
      transfer::Token token = transfer::read_token(sock.get(), 5000);
      UniqueFd copy(::fcntl(sock.get(), F_DUPFD_CLOEXEC, 0));
      if (!rendezvous_.arrived(token, sock)) continue;  // (it closes here)
      links_taken_++;
      std::lock_guard<std::mutex> lock(links_mu_);
      if (links_.size() >= 4) links_.erase(links_.begin());  // (the oldest are long done)
      links_.push_back(std::move(copy));
    } catch (const std::exception&) {
    }
  }
}

int StressNode::break_links() {
  std::lock_guard<std::mutex> lock(links_mu_);
  int open = 0;
  for (auto& sock : links_) {
    char c;
    // (One the reader end shut already reads its end at once.)
    open += ::recv(sock.get(), &c, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
    ::shutdown(sock.get(), SHUT_RDWR);
  }
  links_.clear();
  return open;
}

rpc::ChannelEnd stress_end_spec(bool writer, bool messages, const std::string& peer_node) {
  rpc::ChannelEnd e;
  e.set_messages(messages);
  e.set_job("stress");
  e.set_channel(1);
  e.set_writer(writer);
  e.set_fd(writer ? 1 : 0);
  e.set_peer_node(peer_node);
  e.set_capacity(1 << 20);
  e.set_task(writer ? "a" : "b");
  e.set_peer_task(writer ? "b" : "a");
  return e;
}

EndFds stress_end_fds(bool writer, bool messages) {
  EndFds fds;
  if (messages) {
    MessagePair pair = make_message_pair(writer);
    fds.task_side = std::move(pair.task_side);
    fds.node_side = std::move(pair.node_side);
    fds.task_inode = pair.task_inode;
  } else {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
    ::fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
    fds.task_side.reset(writer ? p[1] : p[0]);
    fds.node_side.reset(writer ? p[0] : p[1]);
  }
  ::fcntl(fds.task_side.get(), F_SETFL, O_NONBLOCK);
  return fds;
}

ChannelLinks StressNode::links(
    std::function<rpc::Node::Stub&(const std::string&)> stub_of,
    std::function<std::optional<std::string>(const rpc::ChannelEnd&)> locate_peer) {
  ChannelLinks links;
  links.node = name_;
  links.link_address = link_address_;
  links.stub = std::move(stub_of);
  links.locate_peer = std::move(locate_peer);
  links.local_reader = [this](const std::string&, uint32_t) { return reader(); };
  links.frame_format = transfer::kFrameFormat;
  return links;
}

void StressNode::set_reader(std::shared_ptr<ReaderEnd> reader) {
  std::lock_guard<std::mutex> lock(mu_);
  reader_ = std::move(reader);
}

std::shared_ptr<ReaderEnd> StressNode::reader() {
  std::lock_guard<std::mutex> lock(mu_);
  return reader_;
}

StressPair::StressPair()
    : n1(std::make_unique<StressNode>("n1")), n2(std::make_unique<StressNode>("n2")) {}

std::shared_ptr<WriterEnd> StressPair::start_writer(
    bool messages, UniqueFd* task_fd,
    std::function<std::optional<std::string>(const rpc::ChannelEnd&)> locate_reader) {
  EndFds w = stress_end_fds(true, messages);
  *task_fd = std::move(w.task_side);
  auto stub_of = [this](const std::string& name) -> rpc::Node::Stub& {
    return name == "n1" ? n1->stub() : n2->stub();
  };
  auto writer = std::make_shared<WriterEnd>(stress_end_spec(true, messages, "n2"), "a",
                                            std::move(w.node_side), w.task_inode,
                                            n1->links(stub_of, std::move(locate_reader)), nullptr);
  writer->start();
  return writer;
}

void StressPair::shut_down(std::shared_ptr<WriterEnd>& writer, int reader_fd) {
  {
    ReadingMeanwhile reading(reader_fd);
    writer.reset();
    n1->shut_down();
    n2->shut_down();
  }
  n1.reset();
  n2.reset();
}

}  // namespace ferry::node
