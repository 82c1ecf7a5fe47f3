// The file descriptor table: which numbers are open, which of them share an open file
// description (dup), and the close-on-exec flag of each. The kinds themselves live in
// file_kinds.h.
#pragma once

#include <sys/types.h>

#include <string>

#include "image.pb.h"

namespace ferry::cr {

class DumpContext;
class Restorer;

// Why ferry cannot capture fd `num` whose /proc link reads `link`, or "" when it can.
// `fdinfo`: the fd's /proc fdinfo text when the caller has it already (read here otherwise).
std::string unsupported_fd(pid_t pid, int num, const std::string& link,
                           const std::string* fdinfo = nullptr);

void dump_files(DumpContext& ctx, image::FileTable* ft, image::Memory* m);
// Builds every open file in ferry and installs it in the helper at its number, then the epoll
// sets and POSIX locks.
void restore_files(Restorer& r, const image::FileTable& ft);

}  // namespace ferry::cr
