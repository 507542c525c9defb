// Mirrors Watermark.embed of sdk/watermark.py operation by operation, in the same IEEE
// precision numpy uses (float32 where its arrays are float32, double where Python's
// scalars are) and in numpy's order, so that a marked native frame equals the Python one.
// One step cannot be bit exact: numpy hands the 108 template correlations to BLAS, whose
// summation order is its own; here they are summed in double over each template's non-zero
// taps, then rounded to float32. They differ from numpy's by about 1e-7 relative, which
// changes a chip's rounded amplitude only when chips * scale lies that close to a half
// grey level.
#include "watermark.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "sha256.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

namespace talkinghead {
namespace {

constexpr int kGrid = kWatermarkGrid;
constexpr int kChips = kGrid * kGrid;
constexpr int kTile = kWatermarkTile;
constexpr int kTileChips = kTile * kTile;
constexpr int kCanon = kWatermarkCanon;
constexpr int kCoded = kWatermarkCodedBits;
constexpr int kPayloadBits = kWatermarkPayloadBits;
constexpr int kConstraint = kWatermarkConstraint;
constexpr const auto& kGenerators = kWatermarkGenerators;
constexpr uint32_t kKey = kWatermarkKey;
constexpr const auto& kLuma = kWatermarkLuma;
constexpr double kStrength = kWatermarkStrength;  // grey levels RMS
constexpr double kRoundingSlack = kWatermarkRoundingSlack;
// float32, as numpy clips the float32 amplitudes with these Python floats.
constexpr float kAmpBase = float(kWatermarkAmpBase), kAmpMax = float(kWatermarkAmpMax);
static_assert(kWatermarkGeneratorsCount == 2, "the convolutional code has rate 1/2");
static_assert(sizeof(kLuma) == 3 * sizeof(float), "RGB luma weights");

// _key_stream: (n,) big-endian uint32 from sha256(key | purpose | counter).
std::vector<uint32_t> key_stream(int n, const std::string& purpose) {
  const auto big_endian = [](uint32_t v) {
    return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
  };
  std::vector<uint32_t> out;
  for (uint32_t block = 0; int(out.size()) < n; ++block) {
    const std::string msg = big_endian(kKey) + purpose + big_endian(block);
    const auto d = sha256(reinterpret_cast<const uint8_t*>(msg.data()), msg.size());
    for (int i = 0; i < 32 && int(out.size()) < n; i += 4) {
      out.push_back((uint32_t(d[i]) << 24) | (uint32_t(d[i + 1]) << 16) | (uint32_t(d[i + 2]) << 8) | d[i + 3]);
    }
  }
  return out;
}

// crc16: polynomial 0x1021, init 0xFFFF, final xor 0xA5A5, bits most significant first.
std::vector<uint8_t> crc16(const std::vector<uint8_t>& bits) {
  uint32_t reg = 0xFFFF;
  for (uint8_t b : bits) {
    const uint32_t top = ((reg >> 15) & 1) ^ b;
    reg = ((reg << 1) & 0xFFFF) ^ (top ? 0x1021 : 0);
  }
  reg ^= 0xA5A5;
  std::vector<uint8_t> out(16);
  for (int i = 0; i < 16; ++i) out[i] = uint8_t((reg >> (15 - i)) & 1);
  return out;
}

// conv_encode: rate 1/2, constraint 7, zero-terminated; outputs interleaved per step.
std::vector<uint8_t> conv_encode(const std::vector<uint8_t>& info) {
  const int k = kConstraint - 1;
  std::vector<uint8_t> bits(size_t(k), 0);
  bits.insert(bits.end(), info.begin(), info.end());
  bits.insert(bits.end(), size_t(k), 0);
  std::vector<uint8_t> out;
  for (size_t t = 0; t + k < bits.size(); ++t) {
    for (uint32_t g : kGenerators) {
      uint8_t x = 0;
      for (int i = 0; i <= k; ++i) x ^= ((g >> i) & 1) ? bits[t + i] : 0;  // tap i: bits[t + i]
      out.push_back(x);
    }
  }
  return out;
}

// _blur: separable [1, 2, 1] / 4 with edge padding, down the columns first, in float32.
void blur(const float* in, float* tmp, float* out, int n) {
  for (int i = 0; i < n; ++i) {
    const float* up = in + size_t(std::max(i - 1, 0)) * n;
    const float* mid = in + size_t(i) * n;
    const float* down = in + size_t(std::min(i + 1, n - 1)) * n;
    for (int j = 0; j < n; ++j) tmp[i * n + j] = (up[j] + 2.0f * mid[j] + down[j]) / 4.0f;
  }
  for (int i = 0; i < n; ++i) {
    const float* row = tmp + size_t(i) * n;
    for (int j = 0; j < n; ++j) {
      out[i * n + j] = (row[std::max(j - 1, 0)] + 2.0f * row[j] + row[std::min(j + 1, n - 1)]) / 4.0f;
    }
  }
}

// numpy's float32 np.sum: pairwise, 8 accumulators per block of at most 128.
float pairwise_sum(const float* a, int n) {
  if (n < 8) {
    float res = 0.0f;
    for (int i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    float r[8];
    std::memcpy(r, a, sizeof r);
    int i = 8;
    for (; i < n - n % 8; i += 8) {
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

double box_filter(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

}  // namespace

uint32_t sdk_version_code(const char* version) {
  // Digits of each of the first three dot-separated parts, modulo 256 (only 2 or 3 bits
  // are kept); a part without digits is 0.
  uint32_t parts[3] = {0, 0, 0};
  int p = 0;
  for (const char* c = version; *c && p < 3; ++c) {
    if (*c == '.') ++p;
    else if (*c >= '0' && *c <= '9') parts[p] = (parts[p] * 10 + uint32_t(*c - '0')) & 0xFF;
  }
  return ((parts[0] & 0x3) << 6) | ((parts[1] & 0x7) << 3) | (parts[2] & 0x7);
}

Watermark::Watermark(WatermarkPayload payload, int height, int width)
    : height_(height), width_(width) {
  // Codeword: payload bits, their CRC, convolutionally encoded, as +-1.
  const uint32_t word = (payload.pack_id << 8) | (payload.version & 0xFF);
  std::vector<uint8_t> info(kPayloadBits);
  for (int i = 0; i < kPayloadBits; ++i) info[i] = uint8_t((word >> (31 - i)) & 1);
  const std::vector<uint8_t> crc = crc16(info);
  info.insert(info.end(), crc.begin(), crc.end());
  const std::vector<uint8_t> coded = conv_encode(info);
  for (int k = 0; k < kCoded; ++k) code_[k] = 1.0f - 2.0f * float(coded[k]);

  // _layout: one kTile x kTile tile, a stable argsort of the "tile-owner" stream and the
  // "tile-sign" stream's low bits, repeated over the kGrid x kGrid chips.
  const std::vector<uint32_t> stream = key_stream(kTileChips, "tile-owner");
  std::vector<int> order(kTileChips);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return stream[a] < stream[b]; });
  const std::vector<uint32_t> signs = key_stream(kTileChips, "tile-sign");
  for (int r = 0; r < kGrid; ++r) {
    for (int c = 0; c < kGrid; ++c) {
      const int t = (r % kTile) * kTile + c % kTile;
      owner_[r * kGrid + c] = order[t] % kCoded;
      sign_[r * kGrid + c] = (signs[t] & 1) ? 1.0f : -1.0f;
    }
  }

  // _templates: each coded bit's chips seen at kCanon px, minus their blur; kept sparse.
  std::vector<float> chips(kCanon * kCanon), tmp(kCanon * kCanon), blurred(kCanon * kCanon);
  templates_.assign(kCoded, {});
  for (int k = 0; k < kCoded; ++k) {
    for (int i = 0; i < kCanon; ++i) {
      for (int j = 0; j < kCanon; ++j) {
        const int chip = (i * kGrid / kCanon) * kGrid + j * kGrid / kCanon;
        chips[i * kCanon + j] = owner_[chip] == k ? sign_[chip] : 0.0f;
      }
    }
    blur(chips.data(), tmp.data(), blurred.data(), kCanon);
    for (int p = 0; p < kCanon * kCanon; ++p) {
      const float t = chips[p] - blurred[p];
      if (t != 0.0f) templates_[k].push_back(Tap{p, double(t)});
    }
  }

  // _chip_index: chip of each pixel row and column, and each chip's share of the pixels.
  chip_row_.resize(size_t(height));
  chip_col_.resize(size_t(width));
  std::vector<int64_t> row_count(kGrid, 0), col_count(kGrid, 0);
  for (int i = 0; i < height; ++i) ++row_count[chip_row_[i] = int(int64_t(i) * kGrid / height)];
  for (int j = 0; j < width; ++j) ++col_count[chip_col_[j] = int(int64_t(j) * kGrid / width)];
  for (int r = 0; r < kGrid; ++r) {
    for (int c = 0; c < kGrid; ++c) {
      share_[r * kGrid + c] = float(double(row_count[r] * col_count[c]) / (double(height) * double(width)));
    }
  }

  // PIL's Image.resize weights (precompute_coeffs in Resample.c): BOX (area average) when
  // shrinking, BICUBIC when either side is under kCanon; in0 = 0, in1 = side.
  const bool down = std::min(height, width) >= kCanon;
  const auto coeffs = [&](int in_size, Resample* r) {
    double (*filter)(double) = down ? box_filter : bicubic_filter;
    const double support_1 = down ? 0.5 : 2.0;
    const double scale = double(in_size) / kCanon;
    const double filterscale = std::max(scale, 1.0);
    const double support = support_1 * filterscale;
    r->taps = int(std::ceil(support)) * 2 + 1;
    r->first.assign(kCanon, 0);
    r->count.assign(kCanon, 0);
    r->weight.assign(size_t(kCanon) * r->taps, 0.0);
    for (int xx = 0; xx < kCanon; ++xx) {
      const double center = (xx + 0.5) * scale;
      const double ss = 1.0 / filterscale;
      const int xmin = std::max(int(center - support + 0.5), 0);
      const int xmax = std::min(int(center + support + 0.5), in_size) - xmin;
      double* k = &r->weight[size_t(xx) * r->taps];
      double ww = 0.0;
      for (int x = 0; x < xmax; ++x) {
        k[x] = filter((x + xmin - center + 0.5) * ss);
        ww += k[x];
      }
      for (int x = 0; x < xmax; ++x) {
        if (ww != 0.0) k[x] /= ww;
      }
      r->first[xx] = xmin;
      r->count[xx] = xmax;
    }
  };
  coeffs(width, &cols_);
  coeffs(height, &rows_);

  luma_.resize(size_t(height) * width);
  wide_.resize(size_t(height) * kCanon);
  for (auto* v : {&canon_, &blurred_, &residual_, &weighted_, &inverse_energy_}) v->resize(kCanon * kCanon);
}

// _luma_canon: luma in float32 as numpy's (H, W, 3) @ (3,), then PIL's "F" mode resize:
// the horizontal pass into a float32 image, then the vertical one, both summing in double.
void Watermark::luma_canon(const uint8_t* rgb) {
  const size_t n = size_t(height_) * width_;
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = rgb + 3 * i;
    luma_[i] = float(p[0]) * kLuma[0] + float(p[1]) * kLuma[1] + float(p[2]) * kLuma[2];
  }
  if (height_ == kCanon && width_ == kCanon) {
    std::copy(luma_.begin(), luma_.end(), canon_.begin());
    return;
  }
  const float* src = luma_.data();
  int src_width = width_;
  if (width_ != kCanon) {
    for (int y = 0; y < height_; ++y) {
      const float* row = luma_.data() + size_t(y) * width_;
      for (int xx = 0; xx < kCanon; ++xx) {
        const double* k = &cols_.weight[size_t(xx) * cols_.taps];
        double ss = 0.0;
        for (int x = 0; x < cols_.count[xx]; ++x) ss += double(row[x + cols_.first[xx]]) * k[x];
        wide_[size_t(y) * kCanon + xx] = float(ss);
      }
    }
    src = wide_.data();
    src_width = kCanon;
  }
  if (height_ != kCanon) {
    for (int yy = 0; yy < kCanon; ++yy) {
      const double* k = &rows_.weight[size_t(yy) * rows_.taps];
      for (int xx = 0; xx < kCanon; ++xx) {
        double ss = 0.0;
        for (int y = 0; y < rows_.count[yy]; ++y) {
          ss += double(src[size_t(y + rows_.first[yy]) * src_width + xx]) * k[y];
        }
        canon_[yy * kCanon + xx] = float(ss);
      }
    }
  } else {
    std::copy(src, src + kCanon * kCanon, canon_.begin());
  }
}

// Watermark._amplitudes: the detector's weighted residual of the frame, correlated with
// each coded bit's template, decides how much each bit must add; each chip's weight is the
// 4th root of the detector's 1 / local energy over its 2 x 2 canonical pixels.
void Watermark::amplitudes(float* amp, float* weight) {
  constexpr int n = kCanon * kCanon;
  float* tmp = weighted_.data();  // scratch until the weighted residual is written
  blur(canon_.data(), tmp, blurred_.data(), kCanon);
  for (int i = 0; i < n; ++i) residual_[i] = canon_[i] - blurred_[i];
  for (int i = 0; i < n; ++i) canon_[i] = residual_[i] * residual_[i];  // canon_ is spent
  blur(canon_.data(), tmp, blurred_.data(), kCanon);
  for (int i = 0; i < n; ++i) inverse_energy_[i] = 1.0f / (blurred_[i] + 1.0f);
  for (int i = 0; i < n; ++i) weighted_[i] = residual_[i] * inverse_energy_[i];
  const float strength = float(kStrength);
  for (int k = 0; k < kCoded; ++k) {
    double corr = 0.0, gain = 0.0;
    for (const Tap& t : templates_[k]) {
      corr += t.value * double(weighted_[t.pixel]);
      gain += double(float(t.value) * float(t.value)) * double(inverse_energy_[t.pixel]);
    }
    const float helps = code_[k] * float(corr) / float(gain);
    amp[k] = std::min(std::max(kAmpBase - helps / strength, 0.0f), kAmpMax);
  }
  static_assert(kCanon == 2 * kGrid, "each chip is 2 x 2 canonical pixels");
  const float* e = inverse_energy_.data();
  for (int r = 0; r < kGrid; ++r) {
    for (int c = 0; c < kGrid; ++c) {
      const float* top = e + size_t(2 * r) * kCanon + 2 * c;
      const float* bottom = top + kCanon;
      const float mean = ((top[0] + top[1]) + (bottom[0] + bottom[1])) / 4.0f;
      weight[r * kGrid + c] = std::sqrt(std::sqrt(mean));
    }
  }
}

void Watermark::embed(uint8_t* rgb) {
  luma_canon(rgb);
  float amp[kCoded], weight[kChips];
  amplitudes(amp, weight);
  float chips[kChips], energy[kChips];
  for (int j = 0; j < kChips; ++j) {
    chips[j] = sign_[j] * (code_[owner_[j]] * amp[owner_[j]]) * weight[j];
    energy[j] = chips[j] * chips[j] * share_[j];
  }
  const double rms = double(std::sqrt(pairwise_sum(energy, kChips)));
  double scale = kStrength / std::max(rms, 1e-6);
  // Rounding can add energy; shrink until the rounded change keeps PSNR >= 40 dB.
  const double limit = (kStrength * kRoundingSlack) * (kStrength * kRoundingSlack);
  int16_t d[kChips];
  for (int it = 0; it < 20; ++it) {
    const float s = float(scale);
    for (int j = 0; j < kChips; ++j) {
      d[j] = int16_t(std::nearbyint(chips[j] * s));  // round half to even, as np.round
      const float df = float(d[j]);
      energy[j] = df * df * share_[j];
    }
    if (double(pairwise_sum(energy, kChips)) <= limit) break;
    scale *= 0.97;
  }
  // Equal change in R, G and B: no colour cast.
  for (int i = 0; i < height_; ++i) {
    const int16_t* drow = d + chip_row_[i] * kGrid;
    uint8_t* px = rgb + size_t(i) * width_ * 3;
    for (int j = 0; j < width_; ++j) {
      const int delta = drow[chip_col_[j]];
      for (int c = 0; c < 3; ++c, ++px) *px = uint8_t(std::min(std::max(int(*px) + delta, 0), 255));
    }
  }
}

}  // namespace talkinghead
