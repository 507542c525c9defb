// Mirrors sdk/rasterize.py and sdk/tensors.py operation by operation. Exactness
// rests on doing the same IEEE operations in the same order:
//   - landmarks widened to double, distances in double, `<=` against radius^2;
//   - no fused multiply-add: it rounds once where numpy rounds twice, which flips
//     pixels that sit exactly on a line's edge. CMake passes -ffp-contract=off; the
//     pragma covers compilers that honour it instead.
#include "rasterize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace talkinghead {
namespace {

struct Part {
  int first, last;  // landmark indices first..last inclusive
  bool closed;
  uint8_t r, g, b;
};

// FACE_PARTS of sdk/rasterize.py, in drawing order (later parts overwrite earlier).
constexpr Part kParts[] = {
    {0, 16, false, 255, 255, 255},  // jaw
    {17, 21, false, 255, 128, 0},   // right_brow
    {22, 26, false, 255, 255, 0},   // left_brow
    {27, 30, false, 0, 0, 255},     // nose_bridge
    {31, 35, false, 0, 255, 255},   // lower_nose
    {36, 41, true, 0, 255, 0},      // right_eye
    {42, 47, true, 128, 255, 128},  // left_eye
    {48, 59, true, 255, 0, 0},      // outer_lips
    {60, 67, true, 255, 0, 255},    // inner_lips
};

// Every pixel whose centre lies within `radius` of the closed segment a-b.
void draw_segment(uint8_t* img, int size, const double* a, const double* b, double radius,
                  const Part& part) {
  // Bounds computed in double and clamped before converting, so coordinates far outside
  // the image cannot overflow an int.
  double lo_x = std::floor(std::min(a[0], b[0]) - radius);
  double hi_x = std::ceil(std::max(a[0], b[0]) + radius);
  double lo_y = std::floor(std::min(a[1], b[1]) - radius);
  double hi_y = std::ceil(std::max(a[1], b[1]) + radius);
  const double last = double(size - 1);
  if (lo_x > last || lo_y > last || hi_x < 0.0 || hi_y < 0.0) return;
  int x_lo = int(std::max(0.0, lo_x)), x_hi = int(std::min(last, hi_x));
  int y_lo = int(std::max(0.0, lo_y)), y_hi = int(std::min(last, hi_y));

  const double dx = b[0] - a[0], dy = b[1] - a[1];
  const double len2 = dx * dx + dy * dy;
  const double r2 = radius * radius;
  for (int y = y_lo; y <= y_hi; ++y) {
    const double py = double(y) - a[1];
    for (int x = x_lo; x <= x_hi; ++x) {
      const double px = double(x) - a[0];
      double t = 0.0;
      if (len2 > 0.0) {
        const double dot = px * dx + py * dy;
        t = std::min(std::max(dot / len2, 0.0), 1.0);
      }
      const double ex = px - t * dx;
      const double ey = py - t * dy;
      if (ex * ex + ey * ey <= r2) {
        uint8_t* p = img + (size_t(y) * size + x) * 3;
        p[0] = part.r;
        p[1] = part.g;
        p[2] = part.b;
      }
    }
  }
}

}  // namespace

double default_thickness(int size) { return std::max(1.0, double(size) / 64.0); }

void rasterize_landmarks(const double* pts, int size, double thickness, uint8_t* out) {
  std::memset(out, 0, size_t(size) * size * 3);
  const double radius = thickness / 2.0;
  for (const Part& part : kParts) {
    for (int i = part.first; i < part.last; ++i) {
      draw_segment(out, size, pts + 2 * i, pts + 2 * (i + 1), radius, part);
    }
    if (part.closed) {
      draw_segment(out, size, pts + 2 * part.last, pts + 2 * part.first, radius, part);
    }
  }
}

void to_model_input(const uint8_t* rgb, int size, float* chw) {
  const size_t plane = size_t(size) * size;
  for (size_t i = 0; i < plane; ++i) {
    for (size_t c = 0; c < 3; ++c) {
      chw[c * plane + i] = float(rgb[3 * i + c]) / 127.5f - 1.0f;
    }
  }
}

void from_model_output(const float* chw, int size, uint8_t* rgb) {
  const size_t plane = size_t(size) * size;
  for (size_t i = 0; i < plane; ++i) {
    for (size_t c = 0; c < 3; ++c) {
      // nearbyint in the default rounding mode rounds half to even, as np.rint does.
      float v = std::nearbyint((chw[c * plane + i] + 1.0f) * 127.5f);
      rgb[3 * i + c] = std::isnan(v) ? 0 : uint8_t(std::min(std::max(v, 0.0f), 255.0f));
    }
  }
}

}  // namespace talkinghead
