// The kinds of open file, one row each: how dump recognises one, how it is described, and how
// restore opens it again. Adding a kind: its file under cr/files/ and one row here.
#include <sys/stat.h>

#include "cr/dump_context.h"
#include "cr/resources/files/file_kinds.h"
#include "util/error.h"

namespace ferry::cr {
namespace {

using K = image::OpenFile;

bool is_link(const FdProbe& p, const char* link) {
  return p.link == link;
}

// In order: the first row that recognises a file takes it (files reached by a path come last,
// for whatever else has a path).
const std::vector<FdKind> kKinds = {
    {"eventfd",
     {K::kEventfd},
     [](const FdProbe& p) { return is_link(p, "anon_inode:[eventfd]"); },
     [](DumpContext&, FdProbe& p, K* f, image::Memory*) { dump_eventfd(p, f); },
     [](Restorer&, const K& f, FileRestoreState&) { return open_eventfd(f); }},
    {"timerfd",
     {K::kTimerfd},
     [](const FdProbe& p) { return is_link(p, "anon_inode:[timerfd]"); },
     [](DumpContext&, FdProbe& p, K* f, image::Memory*) { dump_timerfd(p, f); },
     [](Restorer&, const K& f, FileRestoreState&) { return open_timerfd(f); }},
    {"signalfd",
     {K::kSignalfd},
     [](const FdProbe& p) { return is_link(p, "anon_inode:[signalfd]"); },
     [](DumpContext&, FdProbe& p, K* f, image::Memory*) { dump_signalfd(p, f); },
     [](Restorer&, const K& f, FileRestoreState&) { return open_signalfd(f); }},
    {"epoll",
     {K::kEpoll},
     [](const FdProbe& p) { return is_link(p, "anon_inode:[eventpoll]"); },
     [](DumpContext& ctx, FdProbe& p, K* f, image::Memory*) { dump_epoll(ctx.pid(), p, f); },
     [](Restorer&, const K& f, FileRestoreState&) { return open_epoll(f); }},
    {"namespace",
     {K::kNamespaceFile},
     [](const FdProbe& p) { return !namespace_type(p.link).empty(); },
     [](DumpContext& ctx, FdProbe& p, K* f, image::Memory*) { dump_namespace_file(ctx, p, f); },
     [](Restorer&, const K& f, FileRestoreState&) { return open_namespace_file(f); }},
    {"provided",
     {K::kProvided},
     [](const FdProbe& p) { return is_provided_socket(p.link); },
     [](DumpContext&, FdProbe& p, K* f, image::Memory*) {
       dump_provided(p.link, p.local.get(), f);
     },
     open_provided},
    {"socket",
     {K::kSocket},
     [](const FdProbe& p) { return p.link.rfind("socket:", 0) == 0; },
     [](DumpContext& ctx, FdProbe& p, K* f, image::Memory*) { dump_socket(ctx, p, f); },
     open_socket},
    {"pipe",
     {K::kPipe},
     [](const FdProbe& p) { return S_ISFIFO(p.st.st_mode); },
     [](DumpContext&, FdProbe& p, K* f, image::Memory*) { dump_pipe_end(p, f); },
     open_pipe_end},
    {"path",
     {K::kRegular, K::kDirectory, K::kChardev, K::kTerminal, K::kMemfd, K::kPty},
     [](const FdProbe&) { return true; },
     dump_path_file,
     open_path_file},
};

}  // namespace

const FdKind& fd_kind_of(const FdProbe& p) {
  for (auto& k : kKinds)
    if (k.is(p)) return k;
  fail("internal: no kind of open file for {}", p.link);
}

const FdKind& fd_kind_for(image::OpenFile::KindCase kind) {
  for (auto& k : kKinds)
    for (auto c : k.kinds)
      if (c == kind) return k;
  fail("image: open file of unknown kind {}", static_cast<int>(kind));
}

}  // namespace ferry::cr
