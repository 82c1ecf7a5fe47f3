#include "node/task_fds.h"

#include <fcntl.h>

#include <set>

#include "cr/provided_sockets.h"

namespace ferry::node {

const image::OpenFile* open_file_at(const image::Image& img, int num) {
  for (auto& fd : img.files().fds())
    if (fd.num() == num)
      for (auto& f : img.files().files())
        if (f.id() == fd.file_id()) return &f;
  return nullptr;
}

std::map<int, int> external_fds_of(const image::Image& img, const ChannelEndSpecs& ends,
                                   const TaskEndsHere& here) {
  std::map<int, int> out;
  std::set<uint64_t> external_writes;
  for (auto& f : img.files().files())
    if (f.kind_case() == image::OpenFile::kPipe && (f.flags() & O_ACCMODE) == O_WRONLY)
      for (auto& po : img.files().pipes())
        if (po.id() == f.pipe().pipe_id() && po.external()) external_writes.insert(f.id());
  auto provided = [](const image::OpenFile* f, const char* what) {
    return f && f->kind_case() == image::OpenFile::kProvided && f->provided().what() == what;
  };
  for (auto& end : ends) {
    const image::OpenFile* f = open_file_at(img, end.fd());
    uint32_t acc = end.writer() ? O_WRONLY : O_RDONLY;
    if (end.messages()
            ? provided(f, cr::kProvidedChannel)
            : f && f->kind_case() == image::OpenFile::kPipe && (f->flags() & O_ACCMODE) == acc)
      out[end.fd()] = here.channels->task_side.at(end.fd()).get();
  }
  for (auto& fd : img.files().fds()) {
    const image::OpenFile* f = open_file_at(img, fd.num());
    if (provided(f, cr::kProvidedControl)) out[fd.num()] = here.control;
    // Other pipes to the outside that it writes into are its output.
    if (external_writes.count(fd.file_id()) && !out.count(fd.num())) out[fd.num()] = here.output;
  }
  return out;
}

}  // namespace ferry::node
