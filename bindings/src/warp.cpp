#include "warp.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <utility>

#include "constants.h"
#include "json.h"

namespace talkinghead {

namespace {

// sdk/warp.py FACE_OVAL and STABLE_MESH_POINTS, generated into constants.h (as are
// kBaryEps and kZQuant).
constexpr const int* kFaceOval = kFaceOvalPoints;
constexpr const int* kStable = kStableMeshPoints;
constexpr int kNumOval = kFaceOvalPointsCount;
constexpr int kNumStable = kStableMeshPointsCount;
constexpr double kZClip = 1099511627776.0;  // 2**40
constexpr size_t kMaxRigHeaderBytes = size_t(1) << 20;

Failure fail(const std::string& where, const std::string& what) {
  return Failure{TH_ERR_PACK, where + ": " + what};
}

// numpy's sum of a contiguous float64 vector of at most 128 values (pairwise_sum: eight
// accumulators, then the rest in order), so means match numpy bit for bit.
double np_sum(const double* a, int n) {
  if (n < 8) {
    double res = 0.0;
    for (int i = 0; i < n; ++i) res += a[i];
    return res;
  }
  double r[8];
  for (int j = 0; j < 8; ++j) r[j] = a[j];
  int i = 8;
  for (; i < n - n % 8; i += 8) {
    for (int j = 0; j < 8; ++j) r[j] += a[i + j];
  }
  double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
  for (; i < n; ++i) res += a[i];
  return res;
}

// Mean over rows of a k x 3 array (numpy's axis-0 reduction adds row by row).
void mean_rows(const double* p, int k, double out[3]) {
  for (int c = 0; c < 3; ++c) {
    double s = 0.0;
    for (int i = 0; i < k; ++i) s += p[3 * i + c];
    out[c] = s / k;
  }
}

// Eigen-decomposition of a symmetric 4x4 matrix by cyclic Jacobi rotations; the
// eigenvector of the largest eigenvalue goes to `q`.
void top_eigenvector4(double a[4][4], double q[4]) {
  double v[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
  for (int sweep = 0; sweep < 64; ++sweep) {
    double off = 0.0, diag = 0.0;
    for (int p = 0; p < 4; ++p) {
      diag += a[p][p] * a[p][p];
      for (int r = p + 1; r < 4; ++r) off += a[p][r] * a[p][r];
    }
    if (off <= 1e-32 * diag || off == 0.0) break;
    for (int p = 0; p < 3; ++p) {
      for (int r = p + 1; r < 4; ++r) {
        if (a[p][r] == 0.0) continue;
        const double theta = (a[r][r] - a[p][p]) / (2.0 * a[p][r]);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (std::fabs(theta) + std::sqrt(theta * theta + 1.0));
        const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
        for (int k = 0; k < 4; ++k) {  // columns p, r of A J
          const double akp = a[k][p], akr = a[k][r];
          a[k][p] = c * akp - s * akr;
          a[k][r] = s * akp + c * akr;
        }
        for (int k = 0; k < 4; ++k) {  // rows p, r of J^T (A J)
          const double apk = a[p][k], ark = a[r][k];
          a[p][k] = c * apk - s * ark;
          a[r][k] = s * apk + c * ark;
        }
        for (int k = 0; k < 4; ++k) {
          const double vkp = v[k][p], vkr = v[k][r];
          v[k][p] = c * vkp - s * vkr;
          v[k][r] = s * vkp + c * vkr;
        }
      }
    }
  }
  int best = 0;
  for (int p = 1; p < 4; ++p) {
    if (a[p][p] > a[best][best]) best = p;
  }
  double norm = 0.0;
  for (int k = 0; k < 4; ++k) norm += v[k][best] * v[k][best];
  norm = std::sqrt(norm);
  for (int k = 0; k < 4; ++k) q[k] = v[k][best] / norm;
}

// A little-endian value of type T at p (phones and desktops are little endian).
template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Bytes per element of a safetensors dtype; 0 for a name safetensors does not define.
size_t dtype_size(const std::string& dtype) {
  static const std::pair<const char*, size_t> kSizes[] = {
      {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2},
      {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"I64", 8}, {"U64", 8}, {"F64", 8}};
  for (const auto& kv : kSizes) {
    if (dtype == kv.first) return kv.second;
  }
  return 0;
}

struct TensorRef {
  std::string dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};

}  // namespace

bool rigid_fit(const double* src, const double* dst, int k, double* s, double r[9], double t[3]) {
  double mu_s[3], mu_d[3];
  mean_rows(src, k, mu_s);
  mean_rows(dst, k, mu_d);
  // cov = (dst - mu_d)^T (src - mu_s) / k, and the variance of src as numpy sums it.
  double cov[3][3] = {};
  std::vector<double> sq(size_t(k) * 3);
  for (int i = 0; i < k; ++i) {
    double a[3], b[3];
    for (int c = 0; c < 3; ++c) {
      a[c] = src[3 * i + c] - mu_s[c];
      b[c] = dst[3 * i + c] - mu_d[c];
      sq[3 * size_t(i) + c] = a[c] * a[c];
    }
    for (int j = 0; j < 3; ++j) {
      for (int c = 0; c < 3; ++c) cov[j][c] += b[j] * a[c];
    }
  }
  for (auto& row : cov) {
    for (double& v : row) v /= k;
  }
  const double var = (3 * k <= 128 ? np_sum(sq.data(), 3 * k) : [&] {
    double acc = 0.0;
    for (double v : sq) acc += v;
    return acc;
  }()) / k;
  // Horn: the rotation maximising sum b_i . R a_i is the unit quaternion of the largest
  // eigenvalue of N(S), S = sum a_i b_i^T = k * cov^T.
  const double sxx = cov[0][0], sxy = cov[1][0], sxz = cov[2][0];
  const double syx = cov[0][1], syy = cov[1][1], syz = cov[2][1];
  const double szx = cov[0][2], szy = cov[1][2], szz = cov[2][2];
  double n[4][4] = {
      {sxx + syy + szz, syz - szy, szx - sxz, sxy - syx},
      {syz - szy, sxx - syy - szz, sxy + syx, szx + sxz},
      {szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy},
      {sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz},
  };
  double q[4];
  top_eigenvector4(n, q);
  const double w = q[0], x = q[1], y = q[2], z = q[3];
  r[0] = w * w + x * x - y * y - z * z;
  r[1] = 2.0 * (x * y - w * z);
  r[2] = 2.0 * (x * z + w * y);
  r[3] = 2.0 * (y * x + w * z);
  r[4] = w * w - x * x + y * y - z * z;
  r[5] = 2.0 * (y * z - w * x);
  r[6] = 2.0 * (z * x - w * y);
  r[7] = 2.0 * (z * y + w * x);
  r[8] = w * w - x * x - y * y + z * z;
  double trace = 0.0;  // trace(R^T cov) = the sum of the signed singular values
  for (int j = 0; j < 3; ++j) {
    for (int c = 0; c < 3; ++c) trace += r[3 * j + c] * cov[j][c];
  }
  *s = var > 0 ? trace / var : 1.0;
  for (int j = 0; j < 3; ++j) {
    t[j] = mu_d[j] - *s * (r[3 * j] * mu_s[0] + r[3 * j + 1] * mu_s[1] + r[3 * j + 2] * mu_s[2]);
  }
  return var > 1e-12;
}

Failure parse_rig(const std::vector<uint8_t>& data, int size, const std::string& where, WarpRig* out) {
  if (data.size() < 8) return fail(where, "not a safetensors file (shorter than its 8-byte header length)");
  const uint64_t header_len = load<uint64_t>(data.data());
  if (header_len < 2 || header_len > kMaxRigHeaderBytes || header_len > data.size() - 8) {
    return fail(where, "not a safetensors file (header length " + std::to_string(header_len) +
                           " out of range for " + std::to_string(data.size()) + " bytes)");
  }
  const std::string text(reinterpret_cast<const char*>(data.data()) + 8, size_t(header_len));
  JsonValue header;
  std::string err;
  if (!parse_json(text, &header, &err) || header.type != JsonValue::Type::Object) {
    return fail(where, "the safetensors header is not a JSON object" + (err.empty() ? "" : ": " + err));
  }
  const uint8_t* base = data.data() + 8 + header_len;
  const uint64_t data_len = data.size() - 8 - header_len;
  std::map<std::string, TensorRef> tensors;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& kv : header.object) {
    if (kv.first == "__metadata__") {
      const JsonValue& m = kv.second;
      if (m.type != JsonValue::Type::Object) return fail(where, "__metadata__ must be an object");
      const JsonValue* format = m.find("format");
      if (format && (format->type != JsonValue::Type::String || format->string != "talkinghead.warp-rig")) {
        return fail(where, "__metadata__.format is not 'talkinghead.warp-rig'");
      }
      const JsonValue* version = m.find("version");
      if (version && (version->type != JsonValue::Type::String || version->string != "1")) {
        return fail(where, "unsupported rig version (this library reads version 1)");
      }
      continue;
    }
    if (tensors.count(kv.first)) return fail(where, "tensor '" + kv.first + "' is listed twice");
    const JsonValue& t = kv.second;
    const JsonValue* dtype = t.type == JsonValue::Type::Object ? t.find("dtype") : nullptr;
    const JsonValue* shape = t.type == JsonValue::Type::Object ? t.find("shape") : nullptr;
    const JsonValue* offsets = t.type == JsonValue::Type::Object ? t.find("data_offsets") : nullptr;
    if (!dtype || dtype->type != JsonValue::Type::String || !shape ||
        shape->type != JsonValue::Type::Array || shape->array.size() > 8 || !offsets ||
        offsets->type != JsonValue::Type::Array || offsets->array.size() != 2) {
      return fail(where, "tensor '" + kv.first + "' needs a dtype, a shape and two data_offsets");
    }
    TensorRef ref;
    ref.dtype = dtype->string;
    for (const JsonValue& d : shape->array) {
      if (d.type != JsonValue::Type::Number || !d.is_integer || d.integer < 0 || d.integer > (int64_t(1) << 32)) {
        return fail(where, "tensor '" + kv.first + "' has a bad shape");
      }
      ref.shape.push_back(d.integer);
    }
    for (int i = 0; i < 2; ++i) {
      const JsonValue& o = offsets->array[size_t(i)];
      if (o.type != JsonValue::Type::Number || !o.is_integer || o.integer < 0) {
        return fail(where, "tensor '" + kv.first + "' has bad data_offsets");
      }
      (i ? ref.end : ref.begin) = uint64_t(o.integer);
    }
    if (ref.begin > ref.end || ref.end > data_len) {
      return fail(where, "tensor '" + kv.first + "' lies outside the file's " + std::to_string(data_len) + " data bytes");
    }
    // Every tensor, used or not, holds exactly its shape's bytes (as safetensors requires).
    const size_t item = dtype_size(ref.dtype);
    if (item == 0) return fail(where, "tensor '" + kv.first + "' has an unknown dtype '" + ref.dtype + "'");
    constexpr uint64_t kMaxElements = uint64_t(1) << 40;
    uint64_t count = 1;
    for (int64_t d : ref.shape) {  // checked before each product: no overflow
      count = (d != 0 && count > kMaxElements / uint64_t(d)) ? kMaxElements + 1 : count * uint64_t(d);
    }
    if (count > kMaxElements || count * item != ref.end - ref.begin) {
      return fail(where, "tensor '" + kv.first + "' has the wrong number of bytes for its shape");
    }
    ranges.emplace_back(ref.begin, ref.end);
    tensors.emplace(kv.first, std::move(ref));
  }
  // The tensors tile the data exactly: no holes, no overlaps, nothing after the last.
  std::sort(ranges.begin(), ranges.end());
  uint64_t at = 0;
  for (const auto& r : ranges) {
    if (r.first != at) return fail(where, "tensor data has holes or overlaps");
    at = r.second;
  }
  if (at != data_len) return fail(where, "bytes after the last tensor");

  // name, dtype, rank
  struct Want {
    const char* name;
    const char* dtype;
    size_t rank;
  };
  const Want wants[] = {{"source", "U8", 3},    {"points", "F32", 2}, {"kinds", "U8", 1},
                        {"triangles", "I32", 2}, {"interior", "U8", 1}};
  const uint8_t* ptr[5];
  for (int w = 0; w < 5; ++w) {
    auto it = tensors.find(wants[w].name);
    if (it == tensors.end() || it->second.dtype != wants[w].dtype || it->second.shape.size() != wants[w].rank) {
      return fail(where, std::string("needs a ") + wants[w].dtype + " tensor '" + wants[w].name + "' of rank " +
                             std::to_string(wants[w].rank));
    }
    ptr[w] = base + it->second.begin;
  }
  const auto& src_shape = tensors["source"].shape;
  if (src_shape[0] != size || src_shape[1] != size || src_shape[2] != 3) {
    return fail(where, "source must be (" + std::to_string(size) + ", " + std::to_string(size) +
                           ", 3), the manifest's resolution");
  }
  const auto& pts_shape = tensors["points"].shape;
  const int64_t n = pts_shape[0];
  if (pts_shape[1] != 3 || n < kRigMeshPoints || n > kRigMaxPoints) {
    return fail(where, "points must be (N, 3) with " + std::to_string(kRigMeshPoints) + " <= N <= " +
                           std::to_string(kRigMaxPoints));
  }
  if (tensors["kinds"].shape[0] != n) return fail(where, "kinds must be (N,)");
  const auto& tri_shape = tensors["triangles"].shape;
  const int64_t m = tri_shape[0];
  if (tri_shape[1] != 3 || m < 1 || m >= kRigMaxTriangles) {
    return fail(where, "triangles must be (M, 3) with 1 <= M < " + std::to_string(kRigMaxTriangles));
  }
  if (tensors["interior"].shape[0] != m) return fail(where, "interior must be (M,)");

  WarpRig rig;
  rig.size = size;
  rig.source.assign(ptr[0], ptr[0] + size_t(size) * size * 3);
  rig.points.resize(size_t(n) * 3);
  for (size_t i = 0; i < rig.points.size(); ++i) {
    rig.points[i] = load<float>(ptr[1] + 4 * i);
    if (!std::isfinite(rig.points[i])) return fail(where, "points must be finite");
  }
  rig.kinds.assign(ptr[2], ptr[2] + n);
  for (uint8_t k : rig.kinds) {
    if (k > kFixed) return fail(where, "kinds must be values 0..3");
  }
  rig.triangles.resize(size_t(m) * 3);
  for (size_t i = 0; i < rig.triangles.size(); ++i) {
    rig.triangles[i] = load<int32_t>(ptr[3] + 4 * i);
    if (rig.triangles[i] < 0 || rig.triangles[i] >= n) {
      return fail(where, "triangles must be indices below " + std::to_string(n));
    }
  }
  rig.interior.assign(ptr[4], ptr[4] + m);
  for (uint8_t v : rig.interior) {
    if (v > kMouthInterior) return fail(where, "interior must be values 0..2");
  }
  *out = std::move(rig);
  return {};
}

Warper::Warper(const WarpRig* rig) : rig_(rig), size_(rig->size) {
  const int n = rig->num_points(), m = rig->num_triangles();
  src_.resize(size_t(n) * 3);
  for (size_t i = 0; i < src_.size(); ++i) src_[i] = double(rig->points[i]);
  src_area2_.resize(size_t(m));
  for (int t = 0; t < m; ++t) {
    const double* s0 = &src_[3 * size_t(rig->triangles[3 * t])];
    const double* s1 = &src_[3 * size_t(rig->triangles[3 * t + 1])];
    const double* s2 = &src_[3 * size_t(rig->triangles[3 * t + 2])];
    src_area2_[t] = (s1[0] - s0[0]) * (s2[1] - s0[1]) - (s2[0] - s0[0]) * (s1[1] - s0[1]);
  }
  dst_.resize(size_t(n) * 3);
  best_.resize(size_t(size_) * size_);
  area2_.resize(size_t(m));
  inv_.resize(size_t(m));
}

void Warper::target_points(const double* mesh, double* out) const {
  const int n = rig_->num_points();
  double a[kNumStable * 3], b[kNumStable * 3];
  for (int i = 0; i < kNumStable; ++i) {
    for (int c = 0; c < 3; ++c) {
      a[3 * i + c] = src_[3 * size_t(kStable[i]) + c];
      b[3 * i + c] = mesh[3 * kStable[i] + c];
    }
  }
  double s, r[9], t[3];
  rigid_fit(a, b, kNumStable, &s, r, t);
  double oval_z[kNumOval];
  for (int i = 0; i < kNumOval; ++i) oval_z[i] = src_[3 * size_t(kFaceOval[i]) + 2];
  // Anchors move as if they stood at the face oval's depth (as sdk/warp.py explains).
  const double face_z = np_sum(oval_z, kNumOval) / kNumOval;
  for (int i = 0; i < n; ++i) {
    const double* p = &src_[3 * size_t(i)];
    double* o = &out[3 * size_t(i)];
    const uint8_t kind = rig_->kinds[size_t(i)];
    if (kind == kHead || kind == kHalf) {
      const double at[3] = {s * p[0], s * p[1], s * (i >= kRigMeshPoints ? face_z : p[2])};
      double moved[3];
      for (int j = 0; j < 3; ++j) moved[j] = at[0] * r[3 * j] + at[1] * r[3 * j + 1] + at[2] * r[3 * j + 2] + t[j];
      for (int j = 0; j < 2; ++j) o[j] = kind == kHead ? moved[j] : 0.5 * (p[j] + moved[j]);
    } else {
      const double* from = i < kRigMeshPoints ? &mesh[3 * i] : p;
      o[0] = from[0];
      o[1] = from[1];
      o[2] = from[2];
    }
    if (kind != kMesh) o[2] = p[2];  // anchors keep their own depth behind the face
  }
}

void Warper::warp(const double* dst, uint8_t* rgb, uint8_t* validity) {
  const int size = size_, m = rig_->num_triangles();
  const int32_t* tris = rig_->triangles.data();
  constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  std::fill(best_.begin(), best_.end(), kNone);

  // Pass 1: per pixel, the smallest depth key (quantised z << 20 | triangle) of the
  // triangles whose barycentric weights at its centre are all >= -eps.
  for (int t = 0; t < m; ++t) {
    const double* p0 = &dst[3 * size_t(tris[3 * t])];
    const double* p1 = &dst[3 * size_t(tris[3 * t + 1])];
    const double* p2 = &dst[3 * size_t(tris[3 * t + 2])];
    const double x0 = p0[0], y0 = p0[1], x1 = p1[0], y1 = p1[1], x2 = p2[0], y2 = p2[1];
    if (!(std::isfinite(x0) && std::isfinite(y0) && std::isfinite(x1) && std::isfinite(y1) &&
          std::isfinite(x2) && std::isfinite(y2) && std::isfinite(p0[2]) && std::isfinite(p1[2]) &&
          std::isfinite(p2[2]))) {
      continue;
    }
    const double area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0);
    if (!(std::fabs(area2) > 1e-12)) continue;
    const double lo = double(size - 1);
    const double bx0 = std::min(std::max(std::ceil(std::min({x0, x1, x2}) - 0.5), 0.0), lo);
    const double bx1 = std::min(std::max(std::floor(std::max({x0, x1, x2}) - 0.5), -1.0), lo);
    const double by0 = std::min(std::max(std::ceil(std::min({y0, y1, y2}) - 0.5), 0.0), lo);
    const double by1 = std::min(std::max(std::floor(std::max({y0, y1, y2}) - 0.5), -1.0), lo);
    if (bx1 < bx0 || by1 < by0) continue;
    const double inv = 1.0 / area2;
    area2_[size_t(t)] = area2;  // pass 2 reads the winners' (the same values it would compute)
    inv_[size_t(t)] = inv;
    const double z0 = p0[2], z1 = p1[2], z2 = p2[2];
    const double ey2 = y2 - y0, ex2 = x2 - x0, ex1 = x1 - x0, ey1 = y1 - y0;
    // Each weight is linear in x along a row: a*dx + b. Its span where all three are >= -eps,
    // widened by 2 px, bounds the pixels worth the exact test (which alone decides).
    const double a1 = ey2 * inv, a2 = -ey1 * inv, a0 = -(a1 + a2);
    for (int py = int(by0); py <= int(by1); ++py) {
      const double cy = double(py) + 0.5;
      const double k1 = ex2 * (cy - y0), k2 = ex1 * (cy - y0);
      const double b1 = -k1 * inv, b2 = k2 * inv, b0 = 1.0 - b1 - b2;
      double lo_dx = -std::numeric_limits<double>::infinity(), hi_dx = -lo_dx;
      bool empty = false;
      for (const auto& ab : {std::make_pair(a0, b0), std::make_pair(a1, b1), std::make_pair(a2, b2)}) {
        const double bound = (-kBaryEps - ab.second) / ab.first;
        if (ab.first > 0) {
          lo_dx = std::max(lo_dx, bound);
        } else if (ab.first < 0) {
          hi_dx = std::min(hi_dx, bound);
        } else if (ab.second < -kBaryEps - 1e-6) {
          empty = true;
        }
      }
      if (empty) continue;
      const double span_lo = std::max(bx0, std::ceil(x0 + lo_dx - 0.5) - 2.0);
      const double span_hi = std::min(bx1, std::floor(x0 + hi_dx - 0.5) + 2.0);
      if (!(span_lo <= span_hi)) continue;
      int64_t* row = &best_[size_t(py) * size];
      for (int px = int(span_lo); px <= int(span_hi); ++px) {
        const double dx = (double(px) + 0.5) - x0;
        const double w1 = (dx * ey2 - k1) * inv;
        const double w2 = (k2 - dx * ey1) * inv;
        const double w0 = 1.0 - w1 - w2;
        if (!(w0 >= -kBaryEps && w1 >= -kBaryEps && w2 >= -kBaryEps)) continue;
        const double z = w0 * z0 + w1 * z1 + w2 * z2;
        // clip(floor(v)) == floor(clip(v)) for integer bounds; then floor by truncation.
        const double v = std::min(std::max(z * kZQuant + 0.5, -kZClip), kZClip);
        int64_t q = int64_t(v);
        q -= double(q) > v;
        const int64_t key = ((q + (int64_t(1) << 40)) << kRigTriangleBits) | t;
        if (key < row[px]) row[px] = key;
      }
    }
  }

  // Pass 2: the winner's weights, the source position, bilinear sampling and validity.
  const uint8_t* img = rig_->source.data();
  const double hi = double(size - 1), lim = double(size);
  for (int py = 0; py < size; ++py) {
    const double cy = double(py) + 0.5;
    for (int px = 0; px < size; ++px) {
      const size_t pix = size_t(py) * size + px;
      uint8_t* o = &rgb[3 * pix];
      const int64_t key = best_[pix];
      if (key == kNone) {
        o[0] = o[1] = o[2] = 0;
        validity[pix] = 0;
        continue;
      }
      const int t = int(key & ((int64_t(1) << kRigTriangleBits) - 1));
      const int i0 = tris[3 * t], i1 = tris[3 * t + 1], i2 = tris[3 * t + 2];
      const double* p0 = &dst[3 * size_t(i0)];
      const double* p1 = &dst[3 * size_t(i1)];
      const double* p2 = &dst[3 * size_t(i2)];
      const double x0 = p0[0], y0 = p0[1], x1 = p1[0], y1 = p1[1], x2 = p2[0], y2 = p2[1];
      const double area2 = area2_[size_t(t)], inv = inv_[size_t(t)];
      const double cx = double(px) + 0.5;
      const double v1 = ((cx - x0) * (y2 - y0) - (x2 - x0) * (cy - y0)) * inv;
      const double v2 = ((x1 - x0) * (cy - y0) - (cx - x0) * (y1 - y0)) * inv;
      const double v0 = 1.0 - v1 - v2;
      const double* s0 = &src_[3 * size_t(i0)];
      const double* s1 = &src_[3 * size_t(i1)];
      const double* s2 = &src_[3 * size_t(i2)];
      const double sx = v0 * s0[0] + v1 * s1[0] + v2 * s2[0];
      const double sy = v0 * s0[1] + v1 * s1[1] + v2 * s2[1];
      const double fx = std::min(std::max(sx - 0.5, 0.0), hi);
      const double fy = std::min(std::max(sy - 0.5, 0.0), hi);
      // fx, fy, and the values rounded below, are >= 0: truncation is floor (and avoids
      // a library floor where the CPU has no rounding instruction).
      const int ix = std::min(int(fx), size - 2);
      const int iy = std::min(int(fy), size - 2);
      const double ax = fx - double(ix), ay = fy - double(iy);
      const uint8_t* r0 = &img[3 * (size_t(iy) * size + ix)];
      const uint8_t* r1 = r0 + 3 * size_t(size);
      const uint8_t flag = rig_->interior[size_t(t)];
      double st = 1.0;  // the interior triangle's stretch: its area in the photo / here, <= 1
      if (flag) {
        const double stretch = std::fabs(src_area2_[size_t(t)]) / std::max(std::fabs(area2), 1e-12);
        st = std::min(std::max(stretch, 0.0), 1.0);
      }
      for (int c = 0; c < 3; ++c) {
        const double top = double(r0[c]) * (1.0 - ax) + double(r0[3 + c]) * ax;
        const double bot = double(r1[c]) * (1.0 - ax) + double(r1[3 + c]) * ax;
        double v = top * (1.0 - ay) + bot * ay;
        // An opened mouth: the stretched seam blends toward the inside of a mouth (sdk/warp.py).
        if (flag == kMouthInterior) v = v * (st * st) + kMouthRgb[c] * (1.0 - st * st);
        o[c] = uint8_t(int(v + 0.5));
      }
      double valid = (sx >= 0.0 && sx <= lim && sy >= 0.0 && sy <= lim) ? 255.0 : 0.0;
      if (flag) valid = valid * st;
      validity[pix] = uint8_t(int(valid + 0.5));
    }
  }
}

void Warper::warp_to(const double* mesh, uint8_t* rgb, uint8_t* validity) {
  target_points(mesh, dst_.data());
  warp(dst_.data(), rgb, validity);
}

bool retarget_mesh(const double* frame, const double* reference, const double* avatar, double* out,
                   std::string* error) {
  double ref_s[kNumStable * 3], av_s[kNumStable * 3], fr_s[kNumStable * 3];
  for (int i = 0; i < kNumStable; ++i) {
    for (int c = 0; c < 3; ++c) {
      ref_s[3 * i + c] = reference[3 * kStable[i] + c];
      av_s[3 * i + c] = avatar[3 * kStable[i] + c];
      fr_s[3 * i + c] = frame[3 * kStable[i] + c];
    }
  }
  double s_a, r_a[9], t_a[3], s, r[9], t[3];
  if (!rigid_fit(ref_s, av_s, kNumStable, &s_a, r_a, t_a)) {
    *error = "the driver's reference face is degenerate (its stable mesh points coincide)";
    return false;
  }
  rigid_fit(ref_s, fr_s, kNumStable, &s, r, t);
  if (!(s > 1e-12) || !std::isfinite(s)) {
    *error = "the driver's face is degenerate (its stable mesh points coincide)";
    return false;
  }
  double c_ref[3], c_av[3], c_t[3];
  mean_rows(ref_s, kNumStable, c_ref);
  mean_rows(av_s, kNumStable, c_av);
  mean_rows(fr_s, kNumStable, c_t);
  double r_av[9], tmp[9];  // r_a @ r @ r_a^T
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      tmp[3 * i + j] = r_a[3 * i] * r[j] + r_a[3 * i + 1] * r[3 + j] + r_a[3 * i + 2] * r[6 + j];
    }
  }
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      r_av[3 * i + j] = tmp[3 * i] * r_a[3 * j] + tmp[3 * i + 1] * r_a[3 * j + 1] + tmp[3 * i + 2] * r_a[3 * j + 2];
    }
  }
  double shift[3];
  const double u[3] = {s_a * (c_t[0] - c_ref[0]), s_a * (c_t[1] - c_ref[1]), s_a * (c_t[2] - c_ref[2])};
  for (int j = 0; j < 3; ++j) shift[j] = u[0] * r_a[3 * j] + u[1] * r_a[3 * j + 1] + u[2] * r_a[3 * j + 2];
  for (int i = 0; i < kRigMeshPoints; ++i) {
    const double* f = &frame[3 * i];
    const double d[3] = {f[0] - c_t[0], f[1] - c_t[1], f[2] - c_t[2]};
    double e[3], v[3];
    for (int j = 0; j < 3; ++j) {
      // The driver's expression in its reference pose, scaled onto the avatar.
      const double canon = (d[0] * r[j] + d[1] * r[3 + j] + d[2] * r[6 + j]) / s + c_ref[j];
      e[j] = (canon - reference[3 * i + j]) * s_a;
    }
    for (int j = 0; j < 3; ++j) {
      const double expr = e[0] * r_a[3 * j] + e[1] * r_a[3 * j + 1] + e[2] * r_a[3 * j + 2];
      v[j] = s * (avatar[3 * i + j] + expr - c_av[j]);
    }
    for (int j = 0; j < 3; ++j) {
      out[3 * i + j] = (v[0] * r_av[3 * j] + v[1] * r_av[3 * j + 1] + v[2] * r_av[3 * j + 2]) + c_av[j] + shift[j];
      if (!std::isfinite(out[3 * i + j])) {
        *error = "the retargeted mesh is not finite (the driver's mesh is degenerate or too large)";
        return false;
      }
    }
  }
  return true;
}

void refiner_input(const uint8_t* warped, const uint8_t* landmarks, const uint8_t* validity, int size,
                   float* chw) {
  const size_t plane = size_t(size) * size;
  for (size_t i = 0; i < plane; ++i) {
    for (size_t c = 0; c < 3; ++c) {
      chw[c * plane + i] = float(warped[3 * i + c]) / 127.5f - 1.0f;
      chw[(3 + c) * plane + i] = float(landmarks[3 * i + c]) / 127.5f - 1.0f;
    }
    chw[6 * plane + i] = float(validity[i]) / 127.5f - 1.0f;
  }
}

}  // namespace talkinghead
