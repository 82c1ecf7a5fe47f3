// The readable summary of an image (ferry image show, ferry image trust): what the process was,
// what it held, and whether this host trusts the image. Every string that came from the image is
// escaped before it reaches the terminal.
#pragma once

#include "image/image_files.h"

namespace ferry::cli {

void print_image_summary(const image::LoadedImage& li);

}  // namespace ferry::cli
