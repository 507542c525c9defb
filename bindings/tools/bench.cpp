// talkinghead_bench: per-frame render latency through the C ABI (rasterise + model +
// conversions), the figure a phone app sees, and the time th_drive takes to turn a
// MediaPipe mesh into those landmarks (smoothing + retargeting).
//
//   talkinghead_bench PACK PRECISION [FRAMES] [WARMUP]
//
// Prints one JSON object: per-frame render milliseconds and their median, and the median
// of th_drive.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "talkinghead.h"

namespace {

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

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
  std::vector<double> ms, drive_ms;
  // A face-shaped stand-in for a tracked mesh: 478 points on a circle, their y swaying per
  // frame. th_drive's cost does not depend on where the points are.
  std::vector<float> mesh(TH_MESH_POINTS * 3), driven(TH_LANDMARK_FLOATS);
  for (int i = 0; i < warmup + frames; ++i) {
    for (int p = 0; p < TH_MESH_POINTS; ++p) {
      const float a = 0.0131f * float(p);
      mesh[3 * p] = 0.5f + 0.2f * std::cos(a) + 0.01f * float(p % 7) / 7.0f;
      mesh[3 * p + 1] = 0.5f + 0.25f * std::sin(a) + 0.005f * std::sin(0.3f * float(i + p));
    }
    auto d0 = std::chrono::steady_clock::now();
    if (th_drive(avatar, mesh.data(), mesh.size(), 640, 480, int64_t(i) * 33, driven.data(),
                 driven.size()) != TH_OK) {
      std::fprintf(stderr, "th_drive: %s\n", th_last_error());
      th_close(avatar);
      return 1;
    }
    auto d1 = std::chrono::steady_clock::now();
    if (i >= warmup) drive_ms.push_back(std::chrono::duration<double, std::milli>(d1 - d0).count());
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
  const size_t n = ms.size();
  const auto [lo, hi] = std::minmax_element(ms.begin(), ms.end());
  std::printf("{\"precision\": \"%s\", \"resolution\": %d, \"frames\": %zu, \"median_ms\": %.4f, "
              "\"min_ms\": %.4f, \"max_ms\": %.4f, \"drive_median_ms\": %.5f, \"ms\": [",
              argv[2], size, n, median_of(ms), *lo, *hi, median_of(drive_ms));
  for (size_t i = 0; i < n; ++i) std::printf("%s%.4f", i ? ", " : "", ms[i]);
  std::printf("]}\n");
  return 0;
}
