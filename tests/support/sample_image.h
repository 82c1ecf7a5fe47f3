// A small but complete synthetic image for tests that must not need root: a few memory regions
// with page runs, files, signals, credentials.
#pragma once

#include <string>

#include "image.pb.h"
#include "image/image_key.h"

namespace ferry::test {

// The key the sample image is signed with.
const image::ImageKey& sample_key();
// Writes the sample image into dir (pages with known content) and returns its metadata.
image::Image write_sample_image(const std::string& dir);

}  // namespace ferry::test
