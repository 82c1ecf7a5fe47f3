// The gRPC services of ferryd. Each call maps ferry::Error to a status whose message is the
// error's one line, which the command line prints as it is.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>

namespace ferry::node {

class Daemon;

std::unique_ptr<grpc::Service> make_control_service(Daemon& d);
std::unique_ptr<grpc::Service> make_node_service(Daemon& d);

// Runs f and turns a ferry::Error (or anything else) into a failed status.
grpc::Status guarded(const std::function<void()>& f);

}  // namespace ferry::node
