// Files and directories that ferry trusts only when they are provably its own: owned by the user
// ferry runs as (root, in production), not writable by anybody else, and of the expected type,
// checked on the open descriptor (fstat), never on a path that could change in between. Opening
// never follows a symlink in the last component and never blocks (a FIFO put in place of a file
// is refused, not waited on).
#pragma once

#include <sys/stat.h>

#include <string>

#include "util/fd.h"

namespace ferry {

// What a file of mode `m` is, in the words of a message ("a FIFO", "a directory").
const char* file_type_name(mode_t m);

}  // namespace ferry

namespace ferry::owned {

// What is wrong with `st` as a directory of ours: not a directory, owned by someone else, or
// writable by group or others. "" when it is fine.
std::string dir_problem(const struct stat& st);
// What is wrong with `st` as a private file of ours: not a regular file, owned by someone else,
// or with any permission for group or others. "" when it is fine.
std::string file_problem(const struct stat& st);

// Opens an existing directory of ours. Throws naming `what` and the problem.
UniqueFd open_dir(const std::string& path, const std::string& what);
// Opens directory `path`, creating it (mode 0700) when it does not exist; an existing one must
// be ours. *created says whether this call made it.
UniqueFd make_or_open_dir(const std::string& path, const std::string& what,
                          bool* created = nullptr);
// Opens `name` in dirfd for reading: a regular file, of ours, private. Throws otherwise. When
// `problem` is given, ownership and mode problems are written there instead of thrown (for
// looking at a file that is not trusted); the type is always checked.
UniqueFd open_file_at(int dirfd, const std::string& name, const std::string& what,
                      struct stat* st = nullptr, std::string* problem = nullptr);

}  // namespace ferry::owned
