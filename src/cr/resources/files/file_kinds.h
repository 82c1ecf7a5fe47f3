// One open file description per kind: how dump describes it and how restore builds an equivalent
// one in ferry (which then hands it to the helper). The fd table (fd_table.cc) decides the kind,
// shares descriptions between dup'd fds, and installs the result at the right numbers.
#pragma once

#include <sys/stat.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "cr/resources/files/gone.h"
#include "image.pb.h"
#include "util/fd.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

// What dump knows about one fd of the process.
struct FdProbe {
  int num = -1;
  std::string link;                         // readlink of /proc/PID/fd/N
  std::map<std::string, std::string> info;  // /proc/PID/fdinfo/N, "key: value"
  std::vector<std::string> info_lines;      // the same, line by line
  UniqueFd local;                           // our descriptor of the same open file
  struct stat st {};
  uint32_t flags = 0;  // status flags without O_CLOEXEC
  bool cloexec = false;
  int64_t pos = 0;
};

// State shared by the kinds while the file table is rebuilt.
struct FileRestoreState {
  std::map<uint64_t, std::vector<int>> fd_numbers;     // OpenFile.id -> its fd numbers in the image
  std::map<uint64_t, UniqueFd> pipe_read, pipe_write;  // PipeObject.id -> ferry's ends
  std::map<uint64_t, int> pipe_end_uses;               // how many descriptions took an end already
  std::vector<UniqueFd> fifo_anchors;                  // keep FIFOs open both ways until installed
  std::set<uint64_t> refilled_fifos;                   // FIFOs whose queued bytes are back
  std::set<uint64_t> memfd_created_given;              // memfds whose memfd_create() file is used
  std::unique_ptr<ScratchDir> scratch;                 // where nameless files are made (gone.h)
  std::map<uint64_t, UniqueFd> gone_fifos;             // PipeObject.id -> anchor of its new FIFO
  std::map<uint64_t, UniqueFd> pair_ends;       // socket ino -> its end of a pair made already
  std::map<uint64_t, UniqueFd> dead_peer_ends;  // socket ino -> the other end, closed at the end
  std::map<uint64_t, UniqueFd> made_early;      // socket ino -> a listener made before its turn
  std::map<uint64_t, int> listeners;            // socket ino -> its listener, made (not owned)
  std::map<uint32_t, UniqueFd> pty_masters;     // Pty.index -> the new pair's master
};

// One kind of open file (files/fd_kinds.cc holds the table): how dump recognises one and
// describes it, and how restore opens it again in ferry (the fd table then hands it over).
struct FdKind {
  const char* name;
  std::vector<image::OpenFile::KindCase> kinds;  // the image messages it restores
  bool (*is)(const FdProbe& p);
  void (*dump)(DumpContext& ctx, FdProbe& p, image::OpenFile* f, image::Memory* m);
  UniqueFd (*open)(Restorer& r, const image::OpenFile& f, FileRestoreState& s);
};
const FdKind& fd_kind_of(const FdProbe& p);
const FdKind& fd_kind_for(image::OpenFile::KindCase kind);

// Device, inode, size, times, mode and owner of a file, as an image records them.
image::FileIdentity identity_of(const struct stat& st);

// O_LARGEFILE as the kernel shows it in fdinfo (glibc's O_LARGEFILE is 0 on x86_64).
constexpr uint32_t kKernelLargeFile = 0100000;

// Status flags that survive a reopen (O_CREAT/O_TRUNC/O_EXCL only matter at open time).
uint32_t reopen_flags(uint32_t flags);
// Opens /proc/self/fd/<fd> anew: a new description of the same file with other flags.
UniqueFd reopen_local(int fd, uint32_t flags, const std::string& what);

// Descriptors on /proc/PID/ns/* (files/namespaces.cc): only of the process's own namespaces
// (which are ferry's: preflight), reopened as /proc/self/ns/TYPE. Returns the type for a link
// such as "net:[4026531840]", or "" when `link` is not one.
std::string namespace_type(const std::string& link);
// Why fd `num` of `pid` (a namespace descriptor) cannot be restored; "" when it can.
std::string unsupported_namespace_fd(pid_t pid, int num, const std::string& link);
void dump_namespace_file(DumpContext& ctx, FdProbe& p, image::OpenFile* f);
UniqueFd open_namespace_file(const image::OpenFile& f);

// Sockets (files/sockets*.cc): why fd `num` of `pid` (a socket) cannot be taken, "" if it can;
// dump, the queues of Unix sockets once every fd has its file id, and restore (the peers, queues
// and shutdowns of Unix sockets once every file exists).
std::string unsupported_socket(pid_t pid, int num);
void dump_socket(DumpContext& ctx, FdProbe& p, image::OpenFile* f);
void dump_socket_queues(DumpContext& ctx, const std::vector<FdProbe*>& probes,
                        const std::vector<image::OpenFile*>& files, const image::FileTable& ft);
UniqueFd open_socket(Restorer& r, const image::OpenFile& f, FileRestoreState& s);

// provided.cc: descriptors ferry gave the process (its control socket, its channels' ends of
// messages).
bool is_provided_socket(const std::string& link);
// `fd`: the process's descriptor (a copy of it), whose socket options are recorded.
void dump_provided(const std::string& link, int fd, image::OpenFile* f);
UniqueFd open_provided(Restorer& r, const image::OpenFile& f, FileRestoreState& s);
UniqueFd open_unix_socket(Restorer& r, const image::OpenFile& f, FileRestoreState& s);
void finish_unix_sockets(Restorer& r, const image::FileTable& ft,
                         const std::map<uint64_t, UniqueFd>& local, FileRestoreState& s);

// Pseudo-terminal pairs held whole by the process (files/pty.cc).
std::string unsupported_pty(pid_t pid, int num, const std::string& link);
bool is_pty_master(const struct stat& st);
bool is_pty_slave(const struct stat& st);
// Whether fd `p` (a pty master, or a slave whose master the process holds) was taken as a Pty.
bool dump_pty(DumpContext& ctx, FdProbe& p, image::OpenFile* f);
UniqueFd open_pty(Restorer& r, const image::OpenFile& f, FileRestoreState& s);
void finish_ptys(const image::FileTable& ft, FileRestoreState& s);
// A new description of the slave of `master`, with the image's flags.
UniqueFd open_pty_slave(int master, uint32_t image_flags);

// Regular files, directories, devices, terminals, memfds (files/regular.cc).
void dump_path_file(DumpContext& ctx, FdProbe& p, image::OpenFile* f, image::Memory* m);
UniqueFd open_path_file(Restorer& r, const image::OpenFile& f, FileRestoreState& s);

// Pipes and FIFOs (files/pipes.cc). dump_pipes runs once all fds are probed.
void dump_pipe_end(FdProbe& p, image::OpenFile* f);
void dump_pipes(const std::vector<FdProbe*>& ends, const std::vector<image::OpenFile*>& files,
                image::FileTable* ft);
UniqueFd open_pipe_end(Restorer& r, const image::OpenFile& f, FileRestoreState& s);
// A copy of the `count` bytes queued in the pipe of `read_end`, which keeps them (tee()).
std::string read_queued(int read_end, size_t count);

void dump_eventfd(FdProbe& p, image::OpenFile* f);
UniqueFd open_eventfd(const image::OpenFile& f);
void dump_timerfd(FdProbe& p, image::OpenFile* f);
UniqueFd open_timerfd(const image::OpenFile& f);
void dump_signalfd(FdProbe& p, image::OpenFile* f);
UniqueFd open_signalfd(const image::OpenFile& f);
void dump_epoll(pid_t pid, FdProbe& p, image::OpenFile* f);
UniqueFd open_epoll(const image::OpenFile& f);
// Registers the watched fds inside the helper, once every fd is at its number.
void restore_epoll_targets(Restorer& r, int epoll_fd, const image::Epoll& e,
                           const image::FileTable& ft);
// Why epoll fd `epfd` of `pid` cannot be rebuilt (a watched file no number holds); "" if it can.
std::string unsupported_epoll(pid_t pid, int epfd);

// File locks (files/locks.cc): OFD and flock locks belong to the description, POSIX locks to
// the process.
void dump_locks(const FdProbe& p, image::OpenFile* f, image::FileTable* ft);
void restore_description_locks(const image::OpenFile& f, int local_fd);
void restore_posix_locks(Restorer& r, const image::FileTable& ft);
// flock() locks, taken by the process itself on the fd number first holding each description.
void restore_flocks(Restorer& r, const image::FileTable& ft,
                    const std::map<uint64_t, int>& installed);

}  // namespace ferry::cr
