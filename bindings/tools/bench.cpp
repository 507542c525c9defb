// talkinghead_bench: per-frame latency through the C ABI, the figures a phone app sees:
// th_render (warp + landmarks + refiner + conversions + watermark), th_warp alone, and
// th_drive (a MediaPipe mesh -> smoothing, retargeting, then the same render).
//
//   talkinghead_bench PACK PRECISION [FRAMES] [WARMUP]
//
// Prints one JSON object: per-frame render milliseconds and their median, and the medians
// of th_warp and th_drive.
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

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Frame `index` of the benchmark's motion (talkinghead.bindings.native.bench_motion): the
// neutral mesh turned about its centroid by up to 25 degrees of yaw, the lower lip lowered
// by up to 6 px, so every frame warps and rasterises anew.
void bench_motion(const std::vector<float>& neutral, int index, std::vector<float>* out) {
  static const int kLowerLip[] = {321, 314, 17, 84, 91, 316, 15, 86};  // iBUG 55-59, 65-67
  double c[3] = {0, 0, 0};
  for (int p = 0; p < TH_MESH_POINTS; ++p) {
    for (int k = 0; k < 3; ++k) c[k] += neutral[3 * p + k];
  }
  for (double& v : c) v /= TH_MESH_POINTS;
  const double a = 25.0 * 3.14159265358979323846 / 180.0 * std::sin(0.2 * index);
  for (int p = 0; p < TH_MESH_POINTS; ++p) {
    const double x = neutral[3 * p] - c[0], z = neutral[3 * p + 2] - c[2];
    (*out)[3 * p] = float(x * std::cos(a) - z * std::sin(a) + c[0]);
    (*out)[3 * p + 1] = neutral[3 * p + 1];
    (*out)[3 * p + 2] = float(z * std::cos(a) + x * std::sin(a) + c[2]);
  }
  const float open = float(3.0 * (1.0 + std::sin(0.3 * index)));
  for (int p : kLowerLip) (*out)[3 * p + 1] += open;
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
  std::vector<float> neutral(TH_MESH_FLOATS), mesh(TH_MESH_FLOATS), driver(TH_MESH_FLOATS);
  th_neutral_mesh(avatar, neutral.data(), neutral.size());
  std::vector<uint8_t> out(size_t(size) * size * 3), validity(size_t(size) * size);
  std::vector<double> ms, warp_ms, drive_ms;
  auto fail = [&](const char* what) {
    std::fprintf(stderr, "%s: %s\n", what, th_last_error());
    th_close(avatar);
    return 1;
  };
  for (int i = 0; i < warmup + frames; ++i) {
    bench_motion(neutral, i, &mesh);
    auto t0 = std::chrono::steady_clock::now();
    if (th_warp(avatar, mesh.data(), mesh.size(), out.data(), out.size(), validity.data(),
                validity.size()) != TH_OK) {
      return fail("th_warp");
    }
    if (i >= warmup) warp_ms.push_back(ms_since(t0));
    t0 = std::chrono::steady_clock::now();
    if (th_render(avatar, mesh.data(), mesh.size(), out.data(), out.size()) != TH_OK) {
      return fail("th_render");
    }
    if (i >= warmup) ms.push_back(ms_since(t0));
    // The same motion as a tracker would report it: normalised by a 640 x 480 image.
    for (int p = 0; p < TH_MESH_POINTS; ++p) {
      driver[3 * p] = (mesh[3 * p] + 100.0f) / 640.0f;
      driver[3 * p + 1] = (mesh[3 * p + 1] + 60.0f) / 480.0f;
      driver[3 * p + 2] = mesh[3 * p + 2] / 640.0f;
    }
    t0 = std::chrono::steady_clock::now();
    if (th_drive(avatar, driver.data(), driver.size(), 640, 480, int64_t(i) * 33, out.data(),
                 out.size(), nullptr, 0) != TH_OK) {
      return fail("th_drive");
    }
    if (i >= warmup) drive_ms.push_back(ms_since(t0));
  }
  th_close(avatar);
  const size_t n = ms.size();
  const auto [lo, hi] = std::minmax_element(ms.begin(), ms.end());
  const auto [wlo, whi] = std::minmax_element(warp_ms.begin(), warp_ms.end());
  std::printf("{\"precision\": \"%s\", \"resolution\": %d, \"frames\": %zu, \"median_ms\": %.4f, "
              "\"min_ms\": %.4f, \"max_ms\": %.4f, \"warp_median_ms\": %.4f, \"warp_min_ms\": %.4f, "
              "\"warp_max_ms\": %.4f, \"drive_median_ms\": %.4f, \"ms\": [",
              argv[2], size, n, median_of(ms), *lo, *hi, median_of(warp_ms), *wlo, *whi,
              median_of(drive_ms));
  for (size_t i = 0; i < n; ++i) std::printf("%s%.4f", i ? ", " : "", ms[i]);
  std::printf("]}\n");
  return 0;
}
