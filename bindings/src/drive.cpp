#include "drive.h"

#include <algorithm>
#include <cmath>

namespace talkinghead {

// clang-format off
const int kMeshTo68[68] = {
    34, 137, 177, 58, 172, 169, 149, 148, 152, 377, 378, 394, 397, 288, 401, 366, 264,  // jaw
    156, 63, 52, 66, 107, 336, 296, 282, 293, 383,                                      // brows
    168, 197, 5, 1, 59, 238, 2, 458, 289,                                               // nose
    25, 160, 158, 155, 153, 144, 382, 385, 387, 255, 373, 380,                          // eyes
    61, 74, 37, 11, 267, 304, 291, 321, 314, 17, 84, 91,                                // outer lips
    78, 82, 13, 312, 308, 316, 15, 86};                                                 // inner lips
// clang-format on

namespace {

constexpr double kPi = 3.14159265358979323846;

// sdk/retarget.py STABLE_POINTS: eye corners, nose bridge, tip and base.
constexpr int kStable[] = {36, 39, 42, 45, 27, 28, 29, 30, 31, 33, 35};
constexpr int kNumStable = sizeof(kStable) / sizeof(kStable[0]);

// Smoothing factor of an exponential low-pass with this cutoff at this sample spacing.
double alpha(double cutoff_hz, double dt_s) {
  const double tau = 1.0 / (2.0 * kPi * cutoff_hz);
  return 1.0 / (1.0 + tau / dt_s);
}

}  // namespace

void Driver::reset() {
  has_state_ = false;
  has_neutral_ = false;
  t_ms_ = 0;
  x_.clear();
  dx_.clear();
}

bool Driver::step(const float* mesh, int n, int dims, int width, int height, int64_t t_ms,
                  const float* avatar_neutral, float* out, std::string* error) {
  // Pixels, in float32 as the SDK converts MediaPipe's result; then the face size (the
  // larger side of the raw mesh's box), which makes speeds face sizes per second.
  const float fw = float(width), fh = float(height);
  std::vector<float>& px = px_;  // reused: no allocation per frame
  px.resize(size_t(n) * 2);
  float x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  for (int i = 0; i < n; ++i) {
    const float x = mesh[size_t(i) * dims] * fw, y = mesh[size_t(i) * dims + 1] * fh;
    px[2 * i] = x;
    px[2 * i + 1] = y;
    if (i == 0 || x < x0) x0 = x;
    if (i == 0 || x > x1) x1 = x;
    if (i == 0 || y < y0) y0 = y;
    if (i == 0 || y > y1) y1 = y;
  }
  const double size = std::max({double(x1) - double(x0), double(y1) - double(y0), 1.0});

  const bool smooth = params_.min_cutoff > 0.0;
  if (smooth) {
    if (!has_state_ || x_.size() != px.size()) {
      x_.assign(px.begin(), px.end());
      dx_.assign(px.size(), 0.0);
    } else {
      // t_ms > t_ms_ (the caller checked), so the unsigned difference is exact and >= 1 even
      // for timestamps whose int64 difference would overflow.
      const double dt = double(uint64_t(t_ms) - uint64_t(t_ms_)) / 1000.0;
      const double a_d = alpha(params_.d_cutoff, dt);
      for (size_t k = 0; k < px.size(); ++k) {
        const double v = double(px[k]);
        dx_[k] = dx_[k] + a_d * ((v - x_[k]) / dt - dx_[k]);
        const double cutoff = params_.min_cutoff + params_.beta * std::fabs(dx_[k]) / size;
        x_[k] = x_[k] + alpha(cutoff, dt) * (v - x_[k]);
      }
    }
    for (size_t k = 0; k < px.size(); ++k) px[k] = float(x_[k]);
  }
  has_state_ = true;
  t_ms_ = t_ms;

  double frame[136], avatar[136];
  for (int j = 0; j < 68; ++j) {
    frame[2 * j] = double(px[2 * kMeshTo68[j]]);
    frame[2 * j + 1] = double(px[2 * kMeshTo68[j] + 1]);
  }
  for (int k = 0; k < 136; ++k) avatar[k] = double(avatar_neutral[k]);

  if (!has_neutral_) {
    // Least-squares similarity of the stable points, driver neutral -> avatar neutral.
    // The 2-D case of the SVD solution: the best rotation angle is atan2 of the summed
    // cross and dot products, and the scale is the resulting trace over the variance.
    double ma[2] = {0, 0}, mb[2] = {0, 0};
    for (int p : kStable) {
      for (int c = 0; c < 2; ++c) {
        ma[c] += frame[2 * p + c];
        mb[c] += avatar[2 * p + c];
      }
    }
    for (int c = 0; c < 2; ++c) {
      ma[c] /= kNumStable;
      mb[c] /= kNumStable;
    }
    double var = 0, dot = 0, cross = 0;
    for (int p : kStable) {
      const double ax = frame[2 * p] - ma[0], ay = frame[2 * p + 1] - ma[1];
      const double bx = avatar[2 * p] - mb[0], by = avatar[2 * p + 1] - mb[1];
      var += ax * ax + ay * ay;
      dot += ax * bx + ay * by;
      cross += ax * by - ay * bx;
    }
    if (var < 1e-12) {
      *error = "the driver's neutral face is degenerate (its eye and nose points coincide)";
      has_state_ = false;
      return false;
    }
    const double theta = std::atan2(cross, dot);
    const double c = std::cos(theta), s = std::sin(theta);
    rot_[0] = c;
    rot_[1] = -s;
    rot_[2] = s;
    rot_[3] = c;
    scale_ = std::sqrt(dot * dot + cross * cross) / var;
    std::copy(frame, frame + 136, ref_);
    has_neutral_ = true;
  }
  // avatar + s * (frame - ref) @ R.T
  for (int j = 0; j < 68; ++j) {
    const double dx = scale_ * (frame[2 * j] - ref_[2 * j]);
    const double dy = scale_ * (frame[2 * j + 1] - ref_[2 * j + 1]);
    out[2 * j] = float(avatar[2 * j] + (dx * rot_[0] + dy * rot_[1]));
    out[2 * j + 1] = float(avatar[2 * j + 1] + (dx * rot_[2] + dy * rot_[3]));
  }
  return true;
}

}  // namespace talkinghead
