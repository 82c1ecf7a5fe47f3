// Where a task rebuilt on this node from an image (a migration's destination, a snapshot's
// restore) finds the ends ferry gives it: each of its channel ends, its control descriptor, and
// its output, at the numbers the image has them (a number the task reused for something else is
// left alone).
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

// What the image has at fd `num` (nullptr when the process did not hold it).
const image::OpenFile* open_file_at(const image::Image& img, int num);

}  // namespace ferry::node
