// A migration asked of a node the task does not run on: the node it runs on runs it, and its
// events are passed on. If that node's ferryd goes away mid-way, the report says where the task
// is now, from its home and the destination.
#pragma once

#include <functional>

#include "ferry.pb.h"
#include "node/migration/node_context.h"

namespace ferry::node {

void forward_migration(NodeContext& node, const rpc::MigrateRequest& req, const rpc::TaskInfo& task,
                       const std::function<void(const rpc::MigrateEvent&)>& emit);

}  // namespace ferry::node
