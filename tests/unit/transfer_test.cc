// The page stream and what a migration sends: frames arrive in order and within the announced
// size, a frame changed on the way ends the stream; the layout the destination builds from
// before the freeze passes layout validation only; copy-on-reference takes along the pages
// restoring touches.
#include <sys/socket.h>
#include <sys/user.h>

#include <array>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include "image/validate.h"
#include "support/harness.h"
#include "support/sample_image.h"
#include "transfer/page_stream.h"
#include "transfer/strategies/copy_on_reference.h"
#include "util/error.h"

namespace ferry::transfer {
namespace {

struct Pair {
  UniqueFd a, b;
};

Pair socket_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
    fail_errno(errno, "socketpair");
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::string pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i++) s[i] = static_cast<char>(seed + i * 7 + i / 4096);
  return s;
}

}  // namespace

TEST(PageStreamTest, PagesAndControlFramesArriveInOrderWithinTheLimit) {
  Pair p = socket_pair();
  Key key = random_key();
  const std::string data = pattern(5 << 20, 'p');  // more than one frame
  std::thread sender([&, fd = std::move(p.a)]() mutable {
    StreamSender tx(std::move(fd), key);
    image::PageTarget t{image::PageTarget::kMemory, 0, 0x10000};
    iovec v{const_cast<char*>(data.data()), data.size()};
    tx.append_async(&t, &v, 1);
    tx.send_control(frame_flags::kZero, 0x900000, 8192);
    image::PagesFile pf;
    tx.finish(&pf);
  });
  StreamReceiver rx(std::move(p.b), key, data.size());
  std::string got;
  uint64_t next = 0x10000;
  std::vector<std::pair<uint64_t, uint64_t>> zeros;
  rx.receive_until(
      frame_flags::kEnd,
      [&](const image::PageTarget& t, const char* d, size_t len) {
        EXPECT_EQ(t.addr, next) << "frames out of order";
        next = t.addr + len;
        got.append(d, len);
      },
      [&](const Frame& f) {
        zeros.push_back({f.target.addr, f.aux});
      });
  sender.join();
  EXPECT_TRUE(got == data) << "the data differs after the trip";
  EXPECT_EQ(zeros, (std::vector<std::pair<uint64_t, uint64_t>>{{0x900000, 8192}}));
}

TEST(PageStreamTest, MoreDataThanAnnouncedIsRefused) {
  Pair p = socket_pair();
  Key key = random_key();
  const std::string page = pattern(4096, 'q');
  std::thread sender([&, fd = std::move(p.a)]() mutable {
    StreamSender tx(std::move(fd), key);
    image::PageTarget t{image::PageTarget::kMemory, 0, 0x10000};
    iovec v{const_cast<char*>(page.data()), page.size()};
    tx.append_async(&t, &v, 1);
    t.addr += 4096;
    tx.append_async(&t, &v, 1);
  });
  StreamReceiver rx(std::move(p.b), key, 4096);
  std::string error;
  try {
    rx.receive_all([](const image::PageTarget&, const char*, size_t) {});
  } catch (const Error& e) {
    error = e.what();
  }
  sender.join();
  EXPECT_NE(error.find("larger than announced"), std::string::npos) << error;
}

TEST(PageStreamTest, AFrameChangedOnTheWayEndsTheStream) {
  Pair p = socket_pair();
  Pair relay = socket_pair();
  Key key = random_key();
  const std::string page = pattern(4096, 'x');
  std::thread sender([&, fd = std::move(p.a)]() mutable {
    StreamSender tx(std::move(fd), key);
    image::PageTarget t{image::PageTarget::kMemory, 0, 0x10000};
    iovec v{const_cast<char*>(page.data()), page.size()};
    tx.append_async(&t, &v, 1);
    image::PagesFile pf;
    tx.finish(&pf);
  });
  sender.join();
  // Flip one byte of the page data between the two ends.
  std::vector<char> bytes(64 << 10);
  ssize_t n = ::recv(p.b.get(), bytes.data(), bytes.size(), MSG_DONTWAIT);
  ASSERT_GT(n, 4096);
  bytes[100] ^= 1;
  ASSERT_EQ(::send(relay.a.get(), bytes.data(), static_cast<size_t>(n), 0), n);
  relay.a.reset();
  StreamReceiver rx(std::move(relay.b), key, 1 << 20);
  std::string error;
  try {
    rx.receive_all([](const image::PageTarget&, const char*, size_t) {
      ADD_FAILURE() << "a changed frame was handed over";
    });
  } catch (const Error& e) {
    error = e.what();
  }
  EXPECT_NE(error.find("failed authentication"), std::string::npos) << error;
}

// The tag as docs/protocol.md defines it, made here with OpenSSL alone: Poly1305 under the frame's
// one-time key (AES-128 of the nonce with counters 0 and 1) over the 24 header bytes, 8 zero
// bytes (the header padded to a Poly1305 block, which keeps the data's tagging at full speed)
// and the data.
std::array<uint8_t, kTagSize> documented_tag(const Key& key, uint32_t generation, uint64_t seq,
                                             const FrameHeader& h, const std::string& data) {
  uint8_t blocks[32] = {}, once[32];
  for (int b = 0; b < 2; b++) {
    std::memcpy(blocks + 16 * b, &generation, sizeof generation);
    std::memcpy(blocks + 16 * b + 4, &seq, sizeof seq);
    blocks[16 * b + 15] = static_cast<uint8_t>(b);
  }
  EVP_CIPHER_CTX* aes = EVP_CIPHER_CTX_new();
  int outl = 0;
  EXPECT_EQ(EVP_EncryptInit_ex(aes, EVP_aes_128_ecb(), nullptr, key.data(), nullptr), 1);
  EVP_CIPHER_CTX_set_padding(aes, 0);
  EXPECT_EQ(EVP_EncryptUpdate(aes, once, &outl, blocks, sizeof blocks), 1);
  EVP_CIPHER_CTX_free(aes);
  std::string input(reinterpret_cast<const char*>(&h), sizeof h);
  input.append(8, '\0');
  input += data;
  std::array<uint8_t, kTagSize> tag{};
  size_t len = tag.size();
  EXPECT_EQ(EVP_Q_mac(nullptr, "POLY1305", nullptr, nullptr, nullptr, once, sizeof once,
                      reinterpret_cast<const uint8_t*>(input.data()), input.size(), tag.data(),
                      tag.size(), &len),
            tag.data());
  return tag;
}

TEST(FrameTagTest, CoversTheHeaderPaddedToAPoly1305BlockAndTheData) {
  Key key = random_key();
  const std::string data = pattern(70000, 'q');
  FrameHeader h{0x123456789, 7, static_cast<uint32_t>(data.size()), 1, 2};
  // (The data in two pieces, as the page stream hands over pages.)
  iovec pieces[2] = {{const_cast<char*>(data.data()), 4096},
                     {const_cast<char*>(data.data()) + 4096, data.size() - 4096}};
  std::array<uint8_t, kTagSize> tag{};
  FrameMac mac;
  mac.tag(key, 3, 42, h, pieces, 2, tag.data());
  EXPECT_EQ(tag, documented_tag(key, 3, 42, h, data));
  // Another frame number under the same key: another one-time key, another tag.
  mac.tag(key, 3, 43, h, pieces, 2, tag.data());
  EXPECT_NE(tag, documented_tag(key, 3, 42, h, data));
  EXPECT_EQ(tag, documented_tag(key, 3, 43, h, data));
}

TEST(LayoutBeforeTheFreezeTest, ALayoutPassesLayoutValidationOnly) {
  test::TempDir dir;
  image::Image full = test::write_sample_image(dir.path());
  uint64_t size = full.pages_file().size();
  ASSERT_NO_THROW(image::validate(full, size));
  image::Image layout = full;
  layout.clear_registers();
  layout.clear_signals();
  layout.clear_timers();
  layout.clear_creds();
  layout.clear_attrs();
  EXPECT_NO_THROW(image::validate_layout(layout, size));
  EXPECT_THROW(image::validate(layout, size), Error);
  // A layout is still checked for what it holds.
  layout.mutable_memory()->mutable_vmas(0)->set_start(0x400123);
  EXPECT_THROW(image::validate_layout(layout, size), Error);
}

TEST(CopyOnReferenceTest, ThePagesRestoringTouchesTravelWithThePcb) {
  image::Image img;
  img.mutable_attrs()->mutable_rseq()->set_ptr(0x7f0000003fe0);  // crosses into the next page
  img.mutable_attrs()->mutable_rseq()->set_size(64);
  user_regs_struct r{};
  r.rsp = 0x7ffd00010008;
  r.fs_base = 0x7f0000002740;
  img.mutable_registers()->set_gpr(std::string(reinterpret_cast<const char*>(&r), sizeof r));
  auto ranges = pages_restoring_touches(img);
  // fs_base's page and one each side merge with the rseq pages; the stack: two pages below and
  // two above the page of rsp.
  AddressRanges want = {{0x7f0000001000, 0x7f0000005000}, {0x7ffd0000e000, 0x7ffd00013000}};
  EXPECT_EQ(ranges, want);
  EXPECT_TRUE(pages_restoring_touches(image::Image{}).empty());
}

}  // namespace ferry::transfer
