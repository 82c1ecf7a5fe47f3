// ferryd's side of its link to ferry-init (nodeinit/init_protocol.h): the descriptors the init
// keeps for it across restarts (the tasks' output pipes), and the exits of tasks that were
// orphaned while no ferryd was their parent. Without ferry-init ($FERRY_INIT_FD unset: a ferryd
// started by hand) the link is inactive and ferryd keeps its pipes itself.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "util/fd.h"

namespace ferry::node {

// Who holds the read ends of the tasks' output pipes beyond ferryd's own life, and consumes
// from them what has been delivered (the relay only peeks).
class PipeKeeper {
 public:
  virtual ~PipeKeeper() = default;
  virtual void keep(const std::string& task, int fd, uint64_t offset) = 0;
  virtual void drop(const std::string& task) = 0;
  // Reads and discards n bytes of the task's pipe; returns how many bytes of it have been
  // consumed in all (its offset).
  virtual uint64_t consume(const std::string& task, int fd, uint64_t n) = 0;
};

struct OrphanExit {
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  int status = 0;  // as waitpid() gives it
};

class InitLink : public PipeKeeper {
 public:
  // Connects to $FERRY_INIT_FD and reads what the init kept (bounded wait).
  InitLink();
  ~InitLink() override;
  InitLink(const InitLink&) = delete;
  InitLink& operator=(const InitLink&) = delete;

  bool active() const { return sock_.get() >= 0; }
  const std::string& init_id() const { return init_id_; }
  unsigned starts() const { return starts_; }

  struct KeptPipe {
    UniqueFd fd;
    uint64_t consumed = 0;
  };
  // What the init kept for earlier ferryds, by task id. Taken once.
  std::map<std::string, KeptPipe> take_kept();
  // Exits the init recorded (orphans), those known so far and then each as it comes. The
  // handler must forget() an exit once it has been taken care of.
  void on_exit(std::function<void(const OrphanExit&)> handler);
  void forget(const OrphanExit& e);

  void keep(const std::string& task, int fd, uint64_t offset) override;
  void drop(const std::string& task) override;
  uint64_t consume(const std::string& task, int fd, uint64_t n) override;
  // drop(), and returns once the init has closed its copy (false: it did not answer).
  bool drop_and_wait(const std::string& task);

 private:
  void send(const std::string& msg, int fd = -1);
  // One message (text, and a descriptor if one came); false when the init is gone.
  bool receive(std::string* msg, UniqueFd* fd, int timeout_ms);
  void handle(const std::string& msg, UniqueFd fd);
  void read_loop();

  UniqueFd sock_;
  std::string init_id_;
  unsigned starts_ = 0;
  std::map<std::string, KeptPipe> kept_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<OrphanExit> exits_;
  std::function<void(const OrphanExit&)> on_exit_;
  std::map<std::string, uint64_t> consumed_;  // replies to consume, by task
  std::mutex send_mu_;
  std::mutex consume_mu_;  // one consume at a time: replies come in order
  bool stop_ = false;
  std::thread reader_;
};

// Without an init: ferryd itself consumes.
class LocalPipeKeeper : public PipeKeeper {
 public:
  void keep(const std::string& task, int, uint64_t offset) override;
  void drop(const std::string& task) override;
  uint64_t consume(const std::string& task, int fd, uint64_t n) override;

 private:
  std::mutex mu_;
  std::map<std::string, uint64_t> consumed_;
};

}  // namespace ferry::node
