// talkinghead_bench: per-frame render latency through the C ABI (rasterise + model +
// conversions), the figure a phone app sees.
//
//   talkinghead_bench PACK PRECISION [FRAMES] [WARMUP]
//
// Prints one JSON object: per-frame milliseconds and their median.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "talkinghead.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s PACK fp32|int8 [FRAMES] [WARMUP]\n", argv[0]);
    return 2;
  }
  const int frames = argc > 3 ? std::atoi(argv[3]) : 100;
  const int warmup = argc > 4 ? std::atoi(argv[4]) : 5;
  if (frames < 1 || warmup < 0) {
    std::fprintf(stderr, "FRAMES must be >= 1 and WARMUP >= 0\n");
    return 2;
  }
  th_avatar avatar = 0;
  if (th_open(argv[1], argv[2], &avatar) != TH_OK) {
    std::fprintf(stderr, "th_open: %s\n", th_last_error());
    return 1;
  }
  int32_t size = 0;
  th_resolution(avatar, &size);
  std::vector<float> neutral(TH_LANDMARK_FLOATS), lm(TH_LANDMARK_FLOATS);
  th_neutral_landmarks(avatar, neutral.data(), neutral.size());
  std::vector<uint8_t> out(size_t(size) * size * 3);
  std::vector<double> ms;
  for (int i = 0; i < warmup + frames; ++i) {
    // Open and close the mouth (lower lip points move down) so every frame rasterises anew.
    const float open = 3.0f * (1.0f + std::sin(0.3f * float(i)));
    lm = neutral;
    for (int p = 55; p <= 59; ++p) lm[2 * p + 1] += open;
    for (int p = 65; p <= 67; ++p) lm[2 * p + 1] += open;
    auto t0 = std::chrono::steady_clock::now();
    if (th_render(avatar, lm.data(), lm.size(), out.data(), out.size()) != TH_OK) {
      std::fprintf(stderr, "th_render: %s\n", th_last_error());
      th_close(avatar);
      return 1;
    }
    auto t1 = std::chrono::steady_clock::now();
    if (i >= warmup) ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  th_close(avatar);
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  std::printf("{\"precision\": \"%s\", \"resolution\": %d, \"frames\": %zu, \"median_ms\": %.4f, "
              "\"min_ms\": %.4f, \"max_ms\": %.4f, \"ms\": [",
              argv[2], size, n, median, sorted.front(), sorted.back());
  for (size_t i = 0; i < n; ++i) std::printf("%s%.4f", i ? ", " : "", ms[i]);
  std::printf("]}\n");
  return 0;
}
