// How ferry prints the states and outcomes that cross the wire as proto enums (ferry.proto): a
// value's name without its first word, in lower case, '-' for '_' (TASK_RUNNING is "running",
// OUTCOME_TASK_EXITED "task-exited"). What the command line shows and its JSON carry.
#pragma once

#include <string>

#include <google/protobuf/generated_enum_reflection.h>

#include "ferry.pb.h"

namespace ferry::node {

std::string printable_enum(const google::protobuf::EnumDescriptor* type, int value);

template <typename E>
std::string name_of(E value) {
  return printable_enum(google::protobuf::GetEnumDescriptor<E>(), static_cast<int>(value));
}

// The task ended, one way or the other (exited or lost).
inline bool ended(const rpc::TaskInfo& t) {
  return t.state() == rpc::TASK_EXITED || t.state() == rpc::TASK_LOST;
}

// A destination's copy of a migrated task was released (it runs, or ran, there).
inline bool released(rpc::MigrationState s) {
  return s == rpc::MIGRATION_RUNNING || s == rpc::MIGRATION_PULLING || s == rpc::MIGRATION_LOST;
}

}  // namespace ferry::node
