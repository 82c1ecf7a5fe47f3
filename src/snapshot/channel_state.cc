#include "snapshot/channel_state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "util/error.h"
#include "util/fd.h"
#include "util/owned_files.h"

namespace ferry::snapshot {
namespace {

constexpr char kMagic[8] = {'F', 'C', 'H', 'S', 'T', 'A', 'T', '1'};
constexpr uint64_t kMaxItem = 1ull << 32;

void put(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t get(const std::string& in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= static_cast<uint64_t>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return v;
}

}  // namespace

void write_channel_state(const std::string& path, const std::vector<std::string>& items) {
  std::string out(kMagic, sizeof kMagic);
  put(out, items.size());
  for (auto& item : items) {
    put(out, item.size());
    out += item;
  }
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) fail_errno(errno, "cannot create {}", tmp);
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::write(fd.get(), out.data() + done, out.size() - done);
    if (n <= 0) {
      int err = n < 0 ? errno : ENOSPC;
      ::unlink(tmp.c_str());
      fail_errno(err, "cannot write {}", tmp);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    fail_errno(err, "cannot put {} in place", path);
  }
}

std::vector<std::string> read_channel_state(const std::string& path) {
  auto slash = path.rfind('/');
  UniqueFd dir = owned::open_dir(path.substr(0, slash), "snapshot channel directory");
  struct stat st;
  UniqueFd fd = owned::open_file_at(dir.get(), path.substr(slash + 1), "channel state", &st);
  std::string in(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < in.size()) {
    ssize_t n = ::read(fd.get(), in.data() + got, in.size() - got);
    if (n <= 0) fail_errno(n < 0 ? errno : EIO, "cannot read {}", path);
    got += static_cast<size_t>(n);
  }
  auto corrupt = [&] {
    fail_as(Error::Kind::kBadInput, "{} is not a channel state (corrupted)", path);
  };
  if (in.size() < 16 || std::memcmp(in.data(), kMagic, sizeof kMagic) != 0) corrupt();
  uint64_t count = get(in, 8);
  std::vector<std::string> items;
  size_t at = 16;
  for (uint64_t i = 0; i < count; i++) {
    if (in.size() - at < 8) corrupt();
    uint64_t len = get(in, at);
    at += 8;
    if (len > kMaxItem || in.size() - at < len) corrupt();
    items.emplace_back(in, at, len);
    at += len;
  }
  if (at != in.size()) corrupt();
  return items;
}

}  // namespace ferry::snapshot
