#include "node/task_fds.h"

#include <fcntl.h>

#include "cr/provided.h"

namespace ferry::node {
namespace {

bool names_end(const image::Provided& p, const rpc::ChannelEnd& end) {
  return p.what() == cr::kProvidedChannel && p.has_channel_fd() && p.channel_fd() == end.fd();
}

const image::PipeObject* pipe_object(const image::Image& img, uint64_t pipe_id) {
  for (auto& po : img.files().pipes())
    if (po.id() == pipe_id) return &po;
  return nullptr;
}

// Whether open file `f` of the image is channel end `end`: the socket of messages ferry gave the
// task for it, or its pipe held the end's way.
bool is_end(const image::Image& img, const image::OpenFile& f, const rpc::ChannelEnd& end) {
  if (end.messages())
    return f.kind_case() == image::OpenFile::kProvided && names_end(f.provided(), end);
  if (f.kind_case() != image::OpenFile::kPipe) return false;
  const uint32_t access = end.writer() ? O_WRONLY : O_RDONLY;
  const image::PipeObject* po = pipe_object(img, f.pipe().pipe_id());
  return po && po->has_provided() && names_end(po->provided(), end) &&
         (f.flags() & O_ACCMODE) == access;
}

}  // namespace

const image::PipeObject* channel_pipe_of(const image::Image& img, const rpc::ChannelEnd& end) {
  if (end.messages()) return nullptr;
  for (auto& f : img.files().files())
    if (is_end(img, f, end)) return pipe_object(img, f.pipe().pipe_id());
  return nullptr;
}

std::map<int, int> external_fds_of(const image::Image& img, const ChannelEndSpecs& ends,
                                   const TaskEndsHere& here) {
  std::map<uint64_t, int> by_file;  // OpenFile id -> ferry's descriptor standing in for it
  for (auto& f : img.files().files()) {
    for (auto& end : ends)
      if (is_end(img, f, end)) by_file[f.id()] = here.channels->task_side.at(end.fd()).get();
    if (f.kind_case() == image::OpenFile::kProvided && f.provided().what() == cr::kProvidedControl)
      by_file[f.id()] = here.control;
  }
  // Other pipes to the outside that it writes into are its output.
  for (auto& f : img.files().files()) {
    if (by_file.count(f.id()) || f.kind_case() != image::OpenFile::kPipe ||
        (f.flags() & O_ACCMODE) != O_WRONLY)
      continue;
    const image::PipeObject* po = pipe_object(img, f.pipe().pipe_id());
    if (po && po->external()) by_file[f.id()] = here.output;
  }
  std::map<int, int> out;
  for (auto& fd : img.files().fds()) {
    auto it = by_file.find(fd.file_id());
    if (it != by_file.end()) out[fd.num()] = it->second;
  }
  return out;
}

}  // namespace ferry::node
