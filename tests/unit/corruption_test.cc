// Randomized corruption of images: the reader must reject every damaged or hostile image with a
// ferry::Error (or find it valid), never crash, and never accept one that breaks the invariants.
#include <gtest/gtest.h>

#include <random>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include "image/image_files.h"
#include "image/validate.h"
#include "support/harness.h"
#include "support/sample_image.h"
#include "util/error.h"

namespace ferry::image {
namespace {

// Sets one randomly chosen scalar field somewhere in the message tree to a random value.
void mutate(google::protobuf::Message* msg, std::mt19937_64& rng, int depth = 0) {
  const auto* d = msg->GetDescriptor();
  const auto* r = msg->GetReflection();
  if (d->field_count() == 0) return;
  const auto* f = d->field(static_cast<int>(rng() % static_cast<uint64_t>(d->field_count())));
  using FD = google::protobuf::FieldDescriptor;
  static const uint64_t interesting[] = {
      0,          1,    4095, 4096, 0x7ffffffff000ull, 0xffffffffffffffffull, 0x8000000000000000ull,
      1ull << 32, 12345};
  uint64_t v = (rng() & 1) ? interesting[rng() % 9] : rng();
  if (f->is_repeated()) {
    int n = r->FieldSize(*msg, f);
    if (n == 0) return;
    int i = static_cast<int>(rng() % static_cast<uint64_t>(n));
    switch (f->cpp_type()) {
      case FD::CPPTYPE_MESSAGE:
        if (depth < 6) mutate(r->MutableRepeatedMessage(msg, f, i), rng, depth + 1);
        break;
      case FD::CPPTYPE_UINT64:
        r->SetRepeatedUInt64(msg, f, i, v);
        break;
      case FD::CPPTYPE_UINT32:
        r->SetRepeatedUInt32(msg, f, i, static_cast<uint32_t>(v));
        break;
      default:
        break;
    }
    return;
  }
  switch (f->cpp_type()) {
    case FD::CPPTYPE_MESSAGE:
      if (depth < 6) mutate(r->MutableMessage(msg, f), rng, depth + 1);
      break;
    case FD::CPPTYPE_UINT64:
      r->SetUInt64(msg, f, v);
      break;
    case FD::CPPTYPE_INT64:
      r->SetInt64(msg, f, static_cast<int64_t>(v));
      break;
    case FD::CPPTYPE_UINT32:
      r->SetUInt32(msg, f, static_cast<uint32_t>(v));
      break;
    case FD::CPPTYPE_INT32:
      r->SetInt32(msg, f, static_cast<int32_t>(v));
      break;
    case FD::CPPTYPE_BOOL:
      r->SetBool(msg, f, v & 1);
      break;
    case FD::CPPTYPE_ENUM:
      r->SetEnumValue(msg, f, static_cast<int>(v % 12));
      break;
    case FD::CPPTYPE_STRING:
      r->SetString(msg, f, std::string(v % 300, static_cast<char>(v)));
      break;
    default:
      break;
  }
}

// What an accepted image must satisfy, checked independently of validate().
void check_invariants(const Image& img, uint64_t pages_size) {
  uint64_t prev = 0;
  for (auto& v : img.memory().vmas()) {
    ASSERT_LT(v.start(), v.end());
    ASSERT_EQ(v.start() % 4096, 0u);
    ASSERT_GE(v.start(), prev);
    prev = v.end();
  }
  for (auto& run : img.memory().pages()) {
    ASSERT_GT(run.npages(), 0u);
    ASSERT_LE(run.data_offset() + run.npages() * 4096, pages_size);
  }
}

}  // namespace

TEST(CorruptionTest, RandomByteFlipsAndTruncationsAreRejected) {
  test::TempDir dir;
  Image img = test::write_sample_image(dir.path());
  std::string core = serialize_core(img, test::sample_key());
  std::mt19937_64 rng(1);
  for (int i = 0; i < 2000; i++) {
    std::string bad = core;
    if (i % 3 == 0) {
      bad.resize(rng() % core.size());
    } else {
      int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; f++) bad[rng() % bad.size()] ^= static_cast<char>(1 + rng() % 255);
    }
    if (bad == core) continue;
    EXPECT_THROW(parse_core(bad, img.pages_file().size(), test::sample_key()), Error) << "iteration " << i;
  }
}

TEST(CorruptionTest, HostileFieldValuesAreRejectedOrHarmless) {
  test::TempDir dir;
  Image img = test::write_sample_image(dir.path());
  uint64_t psize = img.pages_file().size();
  std::mt19937_64 rng(2);
  int rejected = 0;
  for (int i = 0; i < 3000; i++) {
    Image bad = img;
    int n = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < n; k++) mutate(&bad, rng);
    // A hostile image carries a valid checksum: only validation stands in the way.
    std::string bytes = serialize_core(bad, test::sample_key());
    try {
      Image parsed = parse_core(bytes, psize, test::sample_key());
      check_invariants(parsed, psize);
    } catch (const Error&) {
      rejected++;
    }
  }
  EXPECT_GT(rejected, 500) << "mutations should mostly produce invalid images";
}

}  // namespace ferry::image
