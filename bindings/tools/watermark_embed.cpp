// Marks raw RGB frames with the native embedder, for tests that compare it with
// talkinghead.sdk.watermark on any frame, without a pack or a model.
//   watermark_embed PACK_ID VERSION HEIGHT WIDTH < frames.rgb > marked.rgb
// stdin holds any number of HEIGHT x WIDTH x 3 uint8 frames back to back.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "watermark.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s PACK_ID VERSION HEIGHT WIDTH < rgb > rgb\n", argv[0]);
    return 2;
  }
  const talkinghead::WatermarkPayload payload{uint32_t(std::strtoul(argv[1], nullptr, 0)),
                                              uint32_t(std::strtoul(argv[2], nullptr, 0))};
  const int height = std::atoi(argv[3]), width = std::atoi(argv[4]);
  if (height < talkinghead::kWatermarkMinSide || width < talkinghead::kWatermarkMinSide) {
    std::fprintf(stderr, "frames must be at least %d px per side\n", talkinghead::kWatermarkMinSide);
    return 2;
  }
  talkinghead::Watermark mark(payload, height, width);
  std::vector<uint8_t> frame(size_t(height) * width * 3);
  while (std::fread(frame.data(), 1, frame.size(), stdin) == frame.size()) {
    mark.embed(frame.data());
    if (std::fwrite(frame.data(), 1, frame.size(), stdout) != frame.size()) return 1;
  }
  return 0;
}
