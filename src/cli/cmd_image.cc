// ferry image show DIR [--json]; ferry image verify DIR; ferry image trust DIR [--into NEW] [--yes]
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include <google/protobuf/util/json_util.h>

#include "cli/commands.h"
#include "cli/image_summary.h"
#include "cr/image_paths.h"
#include "image/image_files.h"
#include "image/verified_pages.h"
#include "util/error.h"
#include "util/mapping.h"
#include "util/owned_files.h"
#include "util/printable.h"

namespace ferry::cli {
namespace {

// The host key for looking at an image: when it cannot be had (not root), the image is shown
// as not trusted, with the reason.
image::LoadedImage inspect(const std::string& dir) {
  std::string key_problem;
  image::ImageKey key;
  try {
    key = image::host_image_key();
  } catch (const Error& e) {
    key_problem = std::string("cannot check its signature: ") + e.what();
  }
  image::LoadedImage li = image::load_image(dir, key, image::Trust::kInspect);
  if (!key_problem.empty()) li.untrusted_why = key_problem;
  return li;
}

bool confirmed(bool yes) {
  if (yes) return true;
  if (!::isatty(0)) fail("give --yes to trust the image without being asked");
  std::printf("Trust this image and sign it with this host's image key? [y/N] ");
  std::fflush(stdout);
  std::string answer;
  std::getline(std::cin, answer);
  return answer == "y" || answer == "Y" || answer == "yes";
}

// Signs a copy of li in `dest` with this host's key: pages.img is read once, and what was read
// is what gets signed.
uint64_t sign_copy(const image::LoadedImage& li, const std::string& dest) {
  image::ImageWriter w(dest, image::host_image_key());
  const uint64_t size = li.image.pages_file().size();
  Mapping buf = Mapping::anonymous(image::kBlockSize, true);
  for (uint64_t off = image::kPagesHeaderSize; off < size;) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(image::kBlockSize, size - off));
    ssize_t n = ::pread(li.pages_fd.get(), buf.data(), len, static_cast<off_t>(off));
    if (n != static_cast<ssize_t>(len))
      fail("cannot read {}/pages.img at {} (it changed while it was copied?)", li.dir, off);
    w.pages().append(buf.data(), len);
    off += len;
  }
  image::Image img = li.image;
  return w.commit(img, true);
}

void add_show(CLI::App* image_cmd) {
  auto* show = image_cmd->add_subcommand("show", "print a readable summary of an image");
  static std::string dir;
  static bool json = false;
  show->add_option("DIR", dir, "image directory")->required();
  show->add_flag("--json", json, "print the whole image as JSON");
  show->callback([] {
    start_logging();
    image::LoadedImage li = inspect(dir);
    if (json) {
      std::string out;
      google::protobuf::util::JsonPrintOptions o;
      o.add_whitespace = true;
      o.preserve_proto_field_names = true;
      (void)google::protobuf::util::MessageToJsonString(li.image, &out, o);
      std::fputs(out.c_str(), stdout);
      return;
    }
    print_image_summary(li);
  });
}

void add_verify(CLI::App* image_cmd) {
  auto* verify = image_cmd->add_subcommand(
      "verify", "check an image completely: ownership, signature, every page block");
  static std::string dir;
  verify->add_option("DIR", dir, "image directory")->required();
  verify->callback([] {
    start_logging();
    image::LoadedImage li = image::load_image(dir, image::host_image_key());
    image::verify_pages(li);
    // What a restore would open: there, and of the kind the image says.
    std::vector<std::string> problems = cr::check_image_paths(li.image);
    if (!problems.empty()) {
      std::string all;
      for (auto& p : problems) all += (all.empty() ? "" : "; ") + p;
      fail("{}: the image is intact, but a restore here would fail: {}", dir, printable(all));
    }
    std::printf("%s: image is complete, intact and signed by this host (%.1f MiB)\n",
                printable(dir).c_str(),
                (li.core_bytes + li.image.pages_file().size()) / 1048576.0);
  });
}

void add_trust(CLI::App* image_cmd) {
  auto* trust = image_cmd->add_subcommand(
      "trust", "show an image brought from elsewhere, then sign it with this host's key");
  static std::string dir, into;
  static bool yes = false;
  trust->add_option("DIR", dir, "image directory")->required();
  trust->add_option("--into", into,
                    "write the signed image into this new directory of root's (needed when DIR "
                    "is not root's)");
  trust->add_flag("--yes,-y", yes, "do not ask");
  trust->callback([] {
    start_logging();
    require_root("image trust");
    image::LoadedImage li = inspect(dir);
    print_image_summary(li);
    std::string dest = into.empty() ? dir : into;
    if (li.untrusted_why.empty() && into.empty()) {
      std::printf("%s is already trusted here\n", printable(dir).c_str());
      return;
    }
    if (into.empty()) {
      // Signed in place only in a directory nobody else can change afterwards.
      owned::open_dir(dir, "image directory");
    }
    if (!confirmed(yes)) fail("not trusted: nothing was changed");
    uint64_t bytes = sign_copy(li, dest);
    std::printf("%s: signed with this host's image key (%.1f MiB); 'ferry restore --images %s' "
                "accepts it now\n",
                printable(dest).c_str(), bytes / 1048576.0, printable(dest).c_str());
  });
}

}  // namespace

void add_image(CLI::App& app) {
  auto* image_cmd = app.add_subcommand("image", "look at, verify and trust image directories");
  image_cmd->require_subcommand(1);
  add_show(image_cmd);
  add_verify(image_cmd);
  add_trust(image_cmd);
}

}  // namespace ferry::cli
