// The gRPC services of ferryd. Each call maps ferry::Error to a status whose message is the
// error's one line, which the command line prints as it is, and whose code is its kind.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "util/error.h"

namespace ferry::node {

class Daemon;

std::unique_ptr<grpc::Service> make_control_service(Daemon& d);
std::unique_ptr<grpc::Service> make_node_service(Daemon& d);

// Runs f and turns a ferry::Error (or anything else) into a failed status.
grpc::Status guarded(const std::function<void()>& f);

// An error's kind crosses the wire as the status code: bad input INVALID_ARGUMENT, refused
// FAILED_PRECONDITION, task ended NOT_FOUND, peer down ABORTED, internal UNKNOWN.
grpc::Status status_of(const Error& e);
// A failed call as an Error of its kind; a status gRPC itself made (the peer could not be
// reached, the deadline passed) is a peer that is down. `what` names the call for those.
Error error_of(const grpc::Status& s, const std::string& what);
// Throws error_of(s, what) for a failed call: a peer's own refusal ("unknown task ...") is
// passed on as it is, of its kind; only a failure to reach the peer is put in network terms.
inline void check_status(const grpc::Status& s, const std::string& what) {
  if (!s.ok()) throw error_of(s, what);
}

}  // namespace ferry::node
