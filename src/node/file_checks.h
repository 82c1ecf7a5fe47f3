// Files a migrating task uses must be the same files on the destination (a shared file system):
// the source lists them, the destination checks them before it accepts. Mapped files and the
// executable must have the same size and modification time, and executables and libraries
// (mapped executable) the same content hash; open files must exist.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "ferry.pb.h"

namespace ferry::node {

std::vector<rpc::FileCheck> file_checks(pid_t pid);
// "" when every file is the same here, else why not.
std::string check_files(const google::protobuf::RepeatedPtrField<rpc::FileCheck>& files);
// "" when the process holds no file locks, else which (a migration refuses such a task: a lock
// on a shared file system is the whole cluster's, and handing it over is not supported).
std::string held_locks(pid_t pid);
// XXH3 of a whole file, cached by path, size and mtime.
uint64_t content_hash(const std::string& path);

}  // namespace ferry::node
