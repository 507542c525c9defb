#include "drive.h"

#include <algorithm>
#include <cmath>

#include "warp.h"

namespace talkinghead {

namespace {

constexpr double kPi = 3.14159265358979323846;

// The eye contours (constants.h kRightEyePoints, kLeftEyePoints) whose means stand in for
// the irises of a 468-point mesh (points 468-472 and 473-477).
constexpr int kEyeContour = 16;
static_assert(kRightEyePointsCount == kEyeContour && kLeftEyePointsCount == kEyeContour,
              "the iris fill averages 16 contour points per eye");
static_assert(kMeshPoints - kMeshPointsNoIris == 10, "5 iris points per eye");

// Smoothing factor of an exponential low-pass with this cutoff at this sample spacing.
double alpha(double cutoff_hz, double dt_s) {
  const double tau = 1.0 / (2.0 * kPi * cutoff_hz);
  return 1.0 / (1.0 + tau / dt_s);
}

}  // namespace

void Driver::reset() {
  has_state_ = false;
  has_reference_ = false;
  t_ms_ = 0;
  x_.clear();
  dx_.clear();
}

bool Driver::step(const float* mesh, int n, int dims, int width, int height, int64_t t_ms,
                  const double* avatar_mesh, float* out, std::string* error) {
  // Pixels, in float32 as the SDK's tracker converts MediaPipe's result.
  const float fw = float(width), fh = float(height);
  constexpr size_t kFloats = size_t(kMeshPoints) * 3;
  std::vector<float>& px = px_;  // reused: no allocation per frame
  px.assign(kFloats, 0.0f);
  for (int i = 0; i < n; ++i) {
    const float* p = &mesh[size_t(i) * dims];
    px[3 * i] = p[0] * fw;
    px[3 * i + 1] = p[1] * fh;
    px[3 * i + 2] = dims == 3 ? p[2] * fw : 0.0f;
  }
  if (n == kMeshPointsNoIris) {
    for (int eye = 0; eye < 2; ++eye) {
      const int* contour = eye == 0 ? kRightEyePoints : kLeftEyePoints;
      double acc[3] = {0.0, 0.0, 0.0};
      for (int k = 0; k < kEyeContour; ++k) {
        for (int c = 0; c < 3; ++c) acc[c] = acc[c] + double(px[3 * contour[k] + c]);
      }
      for (int k = 0; k < 5; ++k) {
        for (int c = 0; c < 3; ++c) px[3 * (kMeshPointsNoIris + 5 * eye + k) + c] = float(acc[c] / double(kEyeContour));
      }
    }
  }
  // The face size (the larger side of the raw mesh's box) makes speeds face sizes per second.
  float x0 = px[0], x1 = px[0], y0 = px[1], y1 = px[1];
  for (int i = 1; i < kMeshPoints; ++i) {
    x0 = std::min(x0, px[3 * i]);
    x1 = std::max(x1, px[3 * i]);
    y0 = std::min(y0, px[3 * i + 1]);
    y1 = std::max(y1, px[3 * i + 1]);
  }
  const double size = std::max({double(x1) - double(x0), double(y1) - double(y0), 1.0});

  // The filter's next state, committed only when the frame succeeds.
  const bool smooth = params_.min_cutoff > 0.0;
  frame_.resize(kFloats);
  if (smooth) {
    if (!has_state_ || x_.size() != kFloats) {
      nx_.assign(px.begin(), px.end());
      ndx_.assign(kFloats, 0.0);
    } else {
      nx_ = x_;
      ndx_ = dx_;
      // t_ms > t_ms_ (the caller checked), so the unsigned difference is exact and >= 1 even
      // for timestamps whose int64 difference would overflow.
      const double dt = double(uint64_t(t_ms) - uint64_t(t_ms_)) / 1000.0;
      bool feature[kMeshPoints] = {};
      for (int i : kFeatureMeshPoints) feature[i] = true;
      const double a_d = alpha(params_.d_cutoff, dt);
      const double a_d_feature = alpha(params_.d_cutoff * kFeatureDCutoffScale, dt);
      const double min_cutoff_feature = params_.min_cutoff * kFeatureMinCutoffScale;
      for (size_t k = 0; k < kFloats; ++k) {
        const double v = double(px[k]);
        const bool f = feature[k / 3];
        ndx_[k] = ndx_[k] + (f ? a_d_feature : a_d) * ((v - nx_[k]) / dt - ndx_[k]);
        const double cutoff =
            (f ? min_cutoff_feature : params_.min_cutoff) + params_.beta * std::fabs(ndx_[k]) / size;
        nx_[k] = nx_[k] + alpha(cutoff, dt) * (v - nx_[k]);
      }
    }
    for (size_t k = 0; k < kFloats; ++k) frame_[k] = double(float(nx_[k]));
  } else {
    for (size_t k = 0; k < kFloats; ++k) frame_[k] = double(px[k]);
  }
  const bool new_reference = !has_reference_;
  if (new_reference) reference_ = frame_;
  target_.resize(kFloats);
  if (!retarget_mesh(frame_.data(), reference_.data(), avatar_mesh, target_.data(), error)) {
    if (new_reference) reference_.clear();
    return false;
  }
  for (size_t k = 0; k < kFloats; ++k) out[k] = float(target_[k]);
  if (smooth) {
    x_.swap(nx_);
    dx_.swap(ndx_);
  }
  has_state_ = true;
  has_reference_ = true;
  t_ms_ = t_ms;
  return true;
}

}  // namespace talkinghead
