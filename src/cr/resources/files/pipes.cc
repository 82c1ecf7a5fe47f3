// Pipes and FIFOs. Bytes queued in a pipe travel whenever the process holds a read end: they are
// what it would read next. Dump copies them with tee(), which leaves the pipe untouched. A FIFO is
// refilled only when it is empty at restore (holding exactly these bytes already, it is the very
// object they were read from; holding others, it belongs to someone else now, and restore fails).
// An end whose peer is outside the process is "external": on fds 0-2 the restore connects it
// to ferry's own stdio; elsewhere it gets a fresh pipe and the user is told.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <set>

#include "cr/image_paths.h"
#include "cr/provided.h"
#include "cr/resources/files/file_kinds.h"
#include "cr/restorer.h"
#include "util/error.h"

namespace ferry::cr {

std::string read_queued(int read_end, size_t count) {
  int tmp[2];
  if (::pipe2(tmp, O_CLOEXEC | O_NONBLOCK) != 0) fail_errno(errno, "pipe2");
  UniqueFd r(tmp[0]), w(tmp[1]);
  // tee() takes the pipe's slots as they are, and a slot may hold more than a page (spliced
  // pages): the copy needs as many slots as the pipe has, whatever its bytes. (Sized by the
  // bytes, it could ask past pipe-max-size, which ferryd may not exceed.)
  const int slots_of_source = ::fcntl(read_end, F_GETPIPE_SZ);
  if (slots_of_source > 65536 && ::fcntl(w.get(), F_SETPIPE_SZ, slots_of_source) < 0)
    fail_errno(errno, "cannot size a pipe for {} queued bytes", count);
  size_t copied = 0;
  while (copied < count) {
    // tee() duplicates without consuming: the process's pipe keeps its bytes.
    ssize_t n = ::tee(read_end, w.get(), count - copied, SPLICE_F_NONBLOCK);
    if (n <= 0) fail_errno(n < 0 ? errno : EIO, "cannot copy the bytes queued in a pipe");
    copied += static_cast<size_t>(n);
    if (copied < count) fail("pipe content changed while it was copied");
  }
  std::string out(count, '\0');
  size_t got = 0;
  while (got < count) {
    ssize_t n = ::read(r.get(), out.data() + got, count - got);
    if (n <= 0) fail_errno(n < 0 ? errno : EIO, "cannot read copied pipe bytes");
    got += static_cast<size_t>(n);
  }
  return out;
}

namespace {

uint64_t pipe_id(const FdProbe& p) {
  return p.st.st_ino;
}

void write_all(int fd, const std::string& bytes, const std::string& what) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) fail_errno(n < 0 ? errno : EIO, "cannot refill {} with {} bytes", what, bytes.size());
    done += static_cast<size_t>(n);
  }
}

// The bytes a FIFO held at checkpoint go back only into an empty FIFO. One that already holds
// exactly them is the very kernel object they were read from (the original still holds it, or
// both nodes share a kernel): refilling would double them. One that holds other bytes is being
// used by someone else: mixing would be wrong without a word, so the restore fails.
void refill_fifo(int anchor, const image::PipeObject& po, const std::string& path) {
  int queued = 0;
  if (::ioctl(anchor, FIONREAD, &queued) != 0) fail_errno(errno, "FIONREAD on FIFO {}", path);
  if (queued > 0) {
    if (static_cast<size_t>(queued) == po.queued().size() &&
        read_queued(anchor, po.queued().size()) == po.queued())
      return;
    fail("FIFO {} now holds {} bytes other than the {} it held at checkpoint; refusing to mix them",
         path, queued, po.queued().size());
  }
  if (po.queued().size() > 65536) ::fcntl(anchor, F_SETPIPE_SZ, static_cast<int>(po.capacity()));
  write_all(anchor, po.queued(), "FIFO " + path);
}

}  // namespace

void dump_pipe_end(FdProbe& p, image::OpenFile* f) {
  image::PipeEnd* e = f->mutable_pipe();
  e->set_pipe_id(pipe_id(p));
  if (S_ISFIFO(p.st.st_mode) && p.link.rfind("pipe:[", 0) != 0) {
    e->set_is_fifo(true);
    std::string path = p.link;
    e->set_fifo_deleted(strip_deleted_suffix(path));
    e->set_fifo_path(path);
    *e->mutable_fifo_identity() = identity_of(p.st);
  }
}

void dump_pipes(const std::vector<FdProbe*>& ends, const std::vector<image::OpenFile*>& files,
                image::FileTable* ft) {
  struct Seen {
    bool read = false, write = false;
    int read_fd = -1;
  };
  std::map<uint64_t, Seen> pipes;
  for (size_t i = 0; i < ends.size(); i++) {
    Seen& s = pipes[pipe_id(*ends[i])];
    uint32_t acc = files[i]->flags() & O_ACCMODE;
    if (acc == O_RDONLY || acc == O_RDWR) {
      s.read = true;
      if (s.read_fd < 0) s.read_fd = ends[i]->local.get();
    }
    if (acc == O_WRONLY || acc == O_RDWR) s.write = true;
  }
  for (auto& [id, s] : pipes) {
    image::PipeObject* po = ft->add_pipes();
    po->set_id(id);
    int any = -1;
    bool anonymous = false;  // (a FIFO's inode is of its file system, not pipefs)
    for (auto* e : ends)
      if (pipe_id(*e) == id) any = e->local.get(), anonymous = e->link.rfind("pipe:[", 0) == 0;
    int cap = ::fcntl(any, F_GETPIPE_SZ);
    po->set_capacity(cap > 0 ? static_cast<uint32_t>(cap) : 65536);
    if (!(s.read && s.write)) po->set_external(true);
    std::optional<image::Provided> provided = anonymous ? provided_of(id) : std::nullopt;
    if (provided && po->external()) *po->mutable_provided() = *provided;
    if (!s.read) continue;
    int queued = 0;
    if (::ioctl(s.read_fd, FIONREAD, &queued) != 0) fail_errno(errno, "FIONREAD on a pipe");
    if (queued > 0) po->set_queued(read_queued(s.read_fd, static_cast<size_t>(queued)));
  }
}

UniqueFd open_pipe_end(Restorer& r, const image::OpenFile& f, FileRestoreState& s) {
  const image::PipeEnd& e = f.pipe();
  const image::PipeObject* po = nullptr;
  for (auto& p : r.image().files().pipes())
    if (p.id() == e.pipe_id()) po = &p;
  uint32_t acc = f.flags() & O_ACCMODE;
  int first_fd = s.fd_numbers.at(f.id()).front();

  if (e.is_fifo()) {
    // An O_RDWR anchor keeps the FIFO open both ways, so the real opens below never block.
    // An unlinked one is made again, without a name, once for all its ends.
    UniqueFd anchor =
        e.fifo_deleted()
            ? UniqueFd(::fcntl(recreated_fifo(e, s), F_DUPFD_CLOEXEC, 0))
            : open_image_path(r.image(), e.fifo_path(), O_RDWR | O_NONBLOCK, PathKind::kFifo,
                              "FIFO");
    if (!anchor) fail_errno(errno, "dup");
    if (!po->queued().empty() && s.refilled_fifos.insert(po->id()).second)
      refill_fifo(anchor.get(), *po, e.fifo_path());
    // Through the anchor: the very FIFO checked above, whatever the path leads to by now.
    UniqueFd fd = reopen_local(anchor.get(), reopen_flags(f.flags()) | O_NONBLOCK, "FIFO");
    if (!(f.flags() & O_NONBLOCK))
      ::fcntl(fd.get(), F_SETFL, static_cast<int>(reopen_flags(f.flags())) & ~O_ACCMODE);
    s.fifo_anchors.push_back(std::move(anchor));
    return fd;
  }

  if (po->external()) {
    if (first_fd <= 2) {
      UniqueFd fd(::fcntl(first_fd, F_DUPFD_CLOEXEC, 0));
      if (!fd)
        fail_errno(
            errno,
            "fd {} of the process was a pipe to the outside, and ferry has no fd {} to give it",
            first_fd, first_fd);
      if (!po->queued().empty())
        r.notes.push_back(fmt::format(
            "fd {} was a pipe from the outside holding {} unread bytes; it is now ferry's own fd "
            "{}, and those bytes are in the image only",
            first_fd, po->queued().size(), first_fd));
      return fd;
    }
    r.notes.push_back(fmt::format(
        "fd {} was a pipe whose other end was outside the process; it now has no peer", first_fd));
  }
  if (!s.pipe_read.count(po->id())) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) fail_errno(errno, "pipe2");
    s.pipe_read[po->id()].reset(p[0]);
    s.pipe_write[po->id()].reset(p[1]);
    if (po->capacity() != 65536) ::fcntl(p[1], F_SETPIPE_SZ, static_cast<int>(po->capacity()));
    if (!po->queued().empty()) write_all(p[1], po->queued(), "a pipe");
  }
  int end = acc == O_WRONLY ? s.pipe_write[po->id()].get() : s.pipe_read[po->id()].get();
  // The first description of an end is the pipe2() end itself; another one is a reopen.
  std::string key_tag = acc == O_WRONLY ? "w" : "r";
  uint64_t key = po->id() * 2 + (acc == O_WRONLY ? 1 : 0);
  UniqueFd fd = s.pipe_end_uses[key]++ == 0 ? UniqueFd(::fcntl(end, F_DUPFD_CLOEXEC, 0))
                                            : reopen_local(end, f.flags(), "pipe " + key_tag);
  if (!fd) fail_errno(errno, "dup");
  ::fcntl(fd.get(), F_SETFL, static_cast<int>(reopen_flags(f.flags())) & ~O_ACCMODE);
  return fd;
}

}  // namespace ferry::cr
