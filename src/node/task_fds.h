// Where a task rebuilt on this node from an image (a migration's destination, a snapshot's
// restore) finds the ends ferry gives it: each of its channel ends, its control descriptor, and
// its output. A channel's end is known in the image by what it is (the socket or pipe ferry gave
// the task, cr/provided.h), at whatever numbers the task holds it now: one it moved to another
// number, or holds at two, stays the channel's; a number it reused for something else is left
// alone.
#pragma once

#include <map>

#include "image.pb.h"
#include "node/channels/channel_ends.h"

namespace ferry::node {

struct TaskEndsHere {
  const ChannelPipes* channels = nullptr;
  int control = -1;  // the task's side of its control descriptor
  int output = -1;   // the write end of the pipe to this node's relay
};

// Image fd number -> ferry's descriptor that stands in for it (cr::BuildOptions::external_fds).
std::map<int, int> external_fds_of(const image::Image& img, const ChannelEndSpecs& ends,
                                   const TaskEndsHere& here);

// The pipe of channel end `end` (of bytes) in the image, when the task still holds it its way
// (else nullptr): its `queued` bytes are what a reader had not read.
const image::PipeObject* channel_pipe_of(const image::Image& img, const rpc::ChannelEnd& end);

}  // namespace ferry::node
