// The C ABI over the ExecuTorch Module API. Every entry point catches everything, sets
// the thread-local error message and returns a status: nothing unwinds into C callers.
#include "talkinghead.h"

#include <executorch/extension/data_loader/buffer_data_loader.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/platform/runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "bundled.h"
#include "constants.h"
#include "drive.h"
#include "pack.h"
#include "provenance.h"
#include "rasterize.h"
#include "signature.h"
#include "warp.h"
#include "watermark.h"

#ifndef TALKINGHEAD_VERSION
#define TALKINGHEAD_VERSION "0.0.0"
#endif

namespace {

using executorch::aten::ScalarType;
using executorch::extension::BufferDataLoader;
using executorch::extension::TensorPtr;
using executorch::extension::module::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::Program;
using talkinghead::Failure;

thread_local std::string g_last_error;

struct Avatar {
  std::mutex mu;  // Module is not thread safe: one render at a time per avatar
  talkinghead::PackInfo info;
  // Declared before `module` so it is destroyed after it: the loader points into it.
  std::vector<uint8_t> program;
  std::unique_ptr<Module> module;
  std::vector<uint8_t> landmark_image;  // S*S*3
  std::vector<uint8_t> warped;          // S*S*3
  std::vector<uint8_t> validity;        // S*S
  std::vector<float> input;             // 7*S*S, the refiner's input
  TensorPtr input_tensor;
  talkinghead::WarpRig rig;             // rig.safetensors, fixed after th_open
  std::unique_ptr<talkinghead::Warper> warper;  // used under `mu`
  talkinghead::WatermarkPayload payload;
  // Built once per avatar (layout, templates, codeword); null when S < 32 px.
  std::unique_ptr<talkinghead::Watermark> watermark;
  bool marking = true;  // th_set_watermark; read and written under `mu`
  talkinghead::Driver driver;  // th_drive; used under `mu`
  double neutral_mesh[TH_MESH_FLOATS] = {};  // the rig's mesh (float32 values), crop px
};

std::mutex g_registry_mu;
std::unordered_map<th_avatar, std::shared_ptr<Avatar>> g_registry;
th_avatar g_next_handle = 1;  // never reused: a stale handle can only ever be "closed"

th_status set_status(th_status status, const std::string& message) {
  g_last_error = status == TH_OK ? std::string() : message;
  return status;
}

th_status set_failure(const Failure& f) { return set_status(f.status, f.message); }

// Run `body`, turning exceptions into statuses so none crosses the C boundary.
template <typename F>
th_status guarded(F&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return set_status(TH_ERR_NO_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return set_status(TH_ERR_INTERNAL, std::string("internal error: ") + e.what());
  } catch (...) {
    return set_status(TH_ERR_INTERNAL, "internal error: unknown exception");
  }
}

std::shared_ptr<Avatar> find_avatar(th_avatar handle) {
  std::lock_guard<std::mutex> lock(g_registry_mu);
  auto it = g_registry.find(handle);
  return it == g_registry.end() ? nullptr : it->second;
}

th_status closed_status(th_avatar handle) {
  return set_status(TH_ERR_CLOSED, "avatar handle " + std::to_string(handle) +
                                       " is closed or was never opened");
}

std::string et_error(Error e) {
  return std::string(executorch::runtime::to_string(e)) + " (0x" +
         [](unsigned v) {
           char buf[16];
           std::snprintf(buf, sizeof buf, "%x", v);
           return std::string(buf);
         }(unsigned(e)) + ")";
}

// Check that a tensor of the method is float32 [1, C, S, S].
Failure check_image_meta(const executorch::runtime::TensorInfo& t, int channels, int size,
                         const char* what, const std::string& source) {
  auto sizes = t.sizes();
  bool ok = t.scalar_type() == ScalarType::Float && sizes.size() == 4 && sizes[0] == 1 &&
            sizes[1] == channels && sizes[2] == size && sizes[3] == size;
  if (ok) return {};
  std::string shape;
  for (size_t i = 0; i < sizes.size(); ++i) shape += (i ? ", " : "") + std::to_string(sizes[i]);
  return Failure{TH_ERR_MODEL, source + ": " + what + " is [" + shape + "] " +
                                   (t.scalar_type() == ScalarType::Float ? "float32" : "non-float32") +
                                   ", expected float32 [1, " + std::to_string(channels) + ", " +
                                   std::to_string(size) + ", " +
                                   std::to_string(size) + "] (the manifest's resolution)"};
}

Failure load_model(Avatar* a) {
  const std::string& source = a->info.model.file;
  if (Failure f = talkinghead::check_pte_header(a->program, source)) return f;
  a->module = std::make_unique<Module>(
      std::make_unique<BufferDataLoader>(a->program.data(), a->program.size()));
  // InternalConsistency runs the flatbuffer verifier over the whole program before use.
  Error err = a->module->load(Program::Verification::InternalConsistency);
  if (err != Error::Ok) return Failure{TH_ERR_MODEL, "ExecuTorch rejected " + source + ": " + et_error(err)};
  auto meta = a->module->method_meta("forward");
  if (!meta.ok()) return Failure{TH_ERR_MODEL, source + " has no 'forward' method: " + et_error(meta.error())};
  if (meta->num_inputs() != 1 || meta->num_outputs() != 1) {
    return Failure{TH_ERR_MODEL, source + ": expected 1 input and 1 output, got " +
                                     std::to_string(meta->num_inputs()) + " and " +
                                     std::to_string(meta->num_outputs())};
  }
  auto in = meta->input_tensor_meta(0);
  auto out = meta->output_tensor_meta(0);
  if (!in.ok() || !out.ok()) return Failure{TH_ERR_MODEL, source + ": input and output must be tensors"};
  const int size = a->info.resolution;
  if (Failure f = check_image_meta(*in, talkinghead::kInputChannels, size, "input", source)) return f;
  if (Failure f = check_image_meta(*out, 3, size, "output", source)) return f;
  err = a->module->load_method("forward");
  if (err != Error::Ok) return Failure{TH_ERR_RUNTIME, "ExecuTorch could not load " + source + ": " + et_error(err)};
  a->landmark_image.assign(size_t(size) * size * 3, 0);
  a->warped.assign(size_t(size) * size * 3, 0);
  a->validity.assign(size_t(size) * size, 0);
  a->input.assign(size_t(size) * size * talkinghead::kInputChannels, 0.0f);
  a->input_tensor =
      executorch::extension::from_blob(a->input.data(), {1, talkinghead::kInputChannels, size, size});
  return {};
}

// Run the model on a->input (caller holds a->mu). On success *out points at its 3*S*S
// float32 output, owned by the method and valid until the next run.
th_status run_model(Avatar* a, const float** out) {
  const int size = a->info.resolution;
  auto result = a->module->forward(EValue(*a->input_tensor));
  if (!result.ok()) {
    return set_status(TH_ERR_RUNTIME, "ExecuTorch failed running " + a->info.model.file + ": " +
                                          et_error(result.error()));
  }
  if (result->size() != 1 || !result->at(0).isTensor()) {
    return set_status(TH_ERR_MODEL, a->info.model.file + " did not return one tensor");
  }
  const auto& y = result->at(0).toTensor();
  if (y.scalar_type() != ScalarType::Float || size_t(y.numel()) != size_t(size) * size * 3) {
    return set_status(TH_ERR_MODEL, a->info.model.file + " returned a tensor of the wrong type or size");
  }
  *out = y.const_data_ptr<float>();
  return TH_OK;
}

// The worst element of a self-check, over all test cases.
struct Deviation {
  double max_abs = 0.0;  // NaN once any output or expected value is NaN
  size_t off = 0;        // elements outside atol + rtol * |want|
  size_t first_case = 0, first_index = 0;
  float first_got = 0.0f, first_want = 0.0f;
};

// Compare one output with the expected float32 bytes of a test case (little endian, as
// on every phone ABI), elementwise: |got - want| <= atol + rtol * |want|.
void compare(const float* got, const uint8_t* want_bytes, size_t count, double atol, double rtol,
             size_t case_index, Deviation* d) {
  for (size_t i = 0; i < count; ++i) {
    float want;
    std::memcpy(&want, want_bytes + i * sizeof(float), sizeof want);
    const double err = std::fabs(double(got[i]) - double(want));
    if (std::isnan(err) || err > d->max_abs) d->max_abs = err;
    if (!(err <= atol + rtol * std::fabs(double(want)))) {
      if (d->off++ == 0) {
        d->first_case = case_index;
        d->first_index = i;
        d->first_got = got[i];
        d->first_want = want;
      }
    }
  }
}

bool valid_precision(const char* p) { return std::strcmp(p, "fp32") == 0 || std::strcmp(p, "int8") == 0; }

// Widen 136 float landmarks to double, as numpy does; false when one is NaN or inf.
bool widen_landmarks(const float* in, double* out) {
  for (int i = 0; i < TH_LANDMARK_FLOATS; ++i) {
    if (!std::isfinite(in[i])) return false;
    out[i] = double(in[i]);
  }
  return true;
}

th_status check_landmark_arg(const float* landmarks, size_t count) {
  if (!landmarks) return set_status(TH_ERR_INVALID_ARGUMENT, "landmarks is NULL");
  if (count != TH_LANDMARK_FLOATS) {
    return set_status(TH_ERR_INVALID_ARGUMENT, "landmarks must hold 136 floats (68 x 2), got " +
                                                   std::to_string(count));
  }
  return TH_OK;
}

th_status check_mesh_arg(const float* mesh, size_t count) {
  if (!mesh) return set_status(TH_ERR_INVALID_ARGUMENT, "mesh is NULL");
  if (count != TH_MESH_FLOATS) {
    return set_status(TH_ERR_INVALID_ARGUMENT, "mesh must hold 1434 floats (478 x (x, y, z)), got " +
                                                   std::to_string(count));
  }
  return TH_OK;
}

// Widen a 478 x 3 float mesh to double, as numpy does; false when a value is NaN or inf.
bool widen_mesh(const float* in, double* out) {
  for (int i = 0; i < TH_MESH_FLOATS; ++i) {
    if (!std::isfinite(in[i])) return false;
    out[i] = double(in[i]);
  }
  return true;
}

// A render needs the mark unless th_set_watermark turned it off (caller holds a->mu).
th_status check_marking(const Avatar* a) {
  if (a->marking && !a->watermark) {
    const int size = a->info.resolution;
    return set_status(TH_ERR_UNSUPPORTED,
                      "frames of " + std::to_string(size) + " px cannot carry the watermark (it needs " +
                          std::to_string(talkinghead::kWatermarkMinSide) +
                          " px per side); th_set_watermark(avatar, 0) renders them unmarked");
  }
  return TH_OK;
}

// Warp, rasterise the mesh's 68 points, refine, watermark (caller holds a->mu):
// talkinghead.sdk.avatar.Avatar.render.
th_status render_mesh(Avatar* a, const double* mesh, uint8_t* out_rgb) {
  const int size = a->info.resolution;
  a->warper->warp_to(mesh, a->warped.data(), a->validity.data());
  double lm[TH_LANDMARK_FLOATS];
  for (int j = 0; j < TH_NUM_LANDMARKS; ++j) {  // sdk/warp.py landmarks68: float32
    lm[2 * j] = double(float(mesh[3 * talkinghead::kMeshTo68[j]]));
    lm[2 * j + 1] = double(float(mesh[3 * talkinghead::kMeshTo68[j] + 1]));
  }
  talkinghead::rasterize_landmarks(lm, size, talkinghead::default_thickness(size), a->landmark_image.data());
  talkinghead::refiner_input(a->warped.data(), a->landmark_image.data(), a->validity.data(), size,
                             a->input.data());
  const float* y = nullptr;
  if (th_status s = run_model(a, &y)) return s;
  talkinghead::from_model_output(y, size, out_rgb);
  if (a->marking) a->watermark->embed(out_rgb);
  return set_status(TH_OK, "");
}

th_status check_output_arg(const uint8_t* out, size_t bytes, int size) {
  const size_t want = size_t(size) * size * 3;
  if (!out) return set_status(TH_ERR_INVALID_ARGUMENT, "out_rgb is NULL");
  if (bytes != want) {
    return set_status(TH_ERR_INVALID_ARGUMENT, "out_rgb must be " + std::to_string(want) +
                                                   " bytes (" + std::to_string(size) + " x " +
                                                   std::to_string(size) + " x 3), got " +
                                                   std::to_string(bytes));
  }
  return TH_OK;
}

}  // namespace

extern "C" {

const char* th_version(void) { return TALKINGHEAD_VERSION; }

int32_t th_abi_version(void) { return TH_ABI_VERSION; }

// The names are generated from bindings/native.py STATUS_NAMES (constants.h); the enum of
// include/talkinghead.h must give each its index there.
static_assert(TH_OK == 0, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_INVALID_ARGUMENT == 1, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_INVALID_LANDMARKS == 2, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_PACK == 3, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_INTEGRITY == 4, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_UNSUPPORTED == 5, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_MODEL == 6, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_RUNTIME == 7, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_CLOSED == 8, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_NO_MEMORY == 9, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_INTERNAL == 10, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_SELF_CHECK == 11, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_TIMESTAMP == 12, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(TH_ERR_SIGNATURE == 13, "th_status and bindings/native.py STATUS_NAMES differ");
static_assert(talkinghead::kStatusNamesCount == TH_ERR_SIGNATURE + 1, "a th_status without a name");

const char* th_status_name(th_status status) {
  const int i = static_cast<int>(status);
  if (i < 0 || i >= talkinghead::kStatusNamesCount) return "TH_ERR_UNKNOWN";
  return talkinghead::kStatusNames[i];
}

const char* th_last_error(void) { return g_last_error.c_str(); }

namespace {

// th_open and th_open_signed: with `require_signature`, manifest.sig must verify against
// one of `keys` before the manifest's bytes are parsed.
th_status open_avatar(const char* pack_dir, const char* precision, bool require_signature,
                      const uint8_t* keys, size_t num_keys, th_avatar* out_avatar) {
  const bool signed_open = require_signature;
  return guarded([&]() -> th_status {
    if (!out_avatar) return set_status(TH_ERR_INVALID_ARGUMENT, "out_avatar is NULL");
    *out_avatar = 0;
    if (!pack_dir) return set_status(TH_ERR_INVALID_ARGUMENT, "pack_dir is NULL");
    if (!precision || !valid_precision(precision)) {
      return set_status(TH_ERR_INVALID_ARGUMENT, std::string("precision must be \"fp32\" or \"int8\", got ") +
                                                     (precision ? "\"" + std::string(precision) + "\"" : "NULL"));
    }
    static std::once_flag init;
    std::call_once(init, [] { executorch::runtime::runtime_init(); });

    auto avatar = std::make_shared<Avatar>();
    const std::string dir(pack_dir);
    std::vector<uint8_t> manifest;
    if (Failure f = talkinghead::read_manifest_bytes(dir, &manifest)) return set_failure(f);
    if (signed_open) {
      if (!keys || num_keys == 0) {
        return set_status(TH_ERR_INVALID_ARGUMENT, "th_open_signed needs at least one public key");
      }
      if (Failure f = talkinghead::check_signature(dir, manifest, keys, num_keys)) return set_failure(f);
    }
    if (Failure f = talkinghead::parse_manifest(dir, manifest, precision, &avatar->info)) {
      return set_failure(f);
    }
    std::vector<uint8_t> rig_bytes;
    if (Failure f = talkinghead::read_rig(avatar->info, &rig_bytes)) return set_failure(f);
    if (Failure f = talkinghead::parse_rig(rig_bytes, avatar->info.resolution, avatar->info.rig.file, &avatar->rig)) {
      return set_failure(f);
    }
    for (size_t i = 0; i < TH_MESH_FLOATS; ++i) avatar->neutral_mesh[i] = double(avatar->rig.points[i]);
    avatar->warper = std::make_unique<talkinghead::Warper>(&avatar->rig);
    if (Failure f = talkinghead::read_model(avatar->info, &avatar->program)) return set_failure(f);
    if (Failure f = load_model(avatar.get())) return set_failure(f);
    avatar->payload = {talkinghead::pack_id(avatar->info), talkinghead::sdk_version_code(TALKINGHEAD_VERSION)};
    const int size = avatar->info.resolution;
    if (size >= talkinghead::kWatermarkMinSide) {
      avatar->watermark = std::make_unique<talkinghead::Watermark>(avatar->payload, size, size);
    }

    std::lock_guard<std::mutex> lock(g_registry_mu);
    th_avatar handle = g_next_handle++;
    g_registry.emplace(handle, std::move(avatar));
    *out_avatar = handle;
    return set_status(TH_OK, "");
  });
}

}  // namespace

th_status th_open(const char* pack_dir, const char* precision, th_avatar* out_avatar) {
  return open_avatar(pack_dir, precision, false, nullptr, 0, out_avatar);
}

th_status th_open_signed(const char* pack_dir, const char* precision, const uint8_t* public_keys,
                         size_t num_keys, th_avatar* out_avatar) {
  return open_avatar(pack_dir, precision, true, public_keys, num_keys, out_avatar);
}

th_status th_resolution(th_avatar handle, int32_t* out_size) {
  return guarded([&]() -> th_status {
    if (!out_size) return set_status(TH_ERR_INVALID_ARGUMENT, "out_size is NULL");
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    *out_size = a->info.resolution;
    return set_status(TH_OK, "");
  });
}

th_status th_neutral_mesh(th_avatar handle, float* out, size_t out_floats) {
  return guarded([&]() -> th_status {
    if (!out) return set_status(TH_ERR_INVALID_ARGUMENT, "out is NULL");
    if (out_floats != TH_MESH_FLOATS) {
      return set_status(TH_ERR_INVALID_ARGUMENT, "out must hold 1434 floats (478 x (x, y, z)), got " +
                                                     std::to_string(out_floats));
    }
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    for (size_t i = 0; i < TH_MESH_FLOATS; ++i) out[i] = float(a->neutral_mesh[i]);
    return set_status(TH_OK, "");
  });
}

th_status th_render(th_avatar handle, const float* mesh, size_t mesh_floats, uint8_t* out_rgb,
                    size_t out_bytes) {
  return guarded([&]() -> th_status {
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    const int size = a->info.resolution;
    if (th_status s = check_mesh_arg(mesh, mesh_floats)) return s;
    if (th_status s = check_output_arg(out_rgb, out_bytes, size)) return s;
    std::vector<double> pts(TH_MESH_FLOATS);
    if (!widen_mesh(mesh, pts.data())) {
      return set_status(TH_ERR_INVALID_LANDMARKS, "mesh contains NaN or inf");
    }
    std::lock_guard<std::mutex> lock(a->mu);
    if (th_status s = check_marking(a.get())) return s;
    return render_mesh(a.get(), pts.data(), out_rgb);
  });
}

th_status th_warp(th_avatar handle, const float* mesh, size_t mesh_floats, uint8_t* out_rgb,
                  size_t out_bytes, uint8_t* out_validity, size_t validity_bytes) {
  return guarded([&]() -> th_status {
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    const int size = a->info.resolution;
    if (th_status s = check_mesh_arg(mesh, mesh_floats)) return s;
    if (th_status s = check_output_arg(out_rgb, out_bytes, size)) return s;
    if (!out_validity) return set_status(TH_ERR_INVALID_ARGUMENT, "out_validity is NULL");
    if (validity_bytes != size_t(size) * size) {
      return set_status(TH_ERR_INVALID_ARGUMENT, "out_validity must be " + std::to_string(size_t(size) * size) +
                                                     " bytes (S x S), got " + std::to_string(validity_bytes));
    }
    std::vector<double> pts(TH_MESH_FLOATS);
    if (!widen_mesh(mesh, pts.data())) {
      return set_status(TH_ERR_INVALID_LANDMARKS, "mesh contains NaN or inf");
    }
    std::lock_guard<std::mutex> lock(a->mu);
    a->warper->warp_to(pts.data(), out_rgb, out_validity);
    return set_status(TH_OK, "");
  });
}

th_status th_set_watermark(th_avatar handle, int32_t enabled) {
  return guarded([&]() -> th_status {
    if (enabled != 0 && enabled != 1) {
      return set_status(TH_ERR_INVALID_ARGUMENT, "enabled must be 1 (mark frames) or 0 (do not), got " +
                                                     std::to_string(enabled));
    }
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    std::lock_guard<std::mutex> lock(a->mu);  // a render already running keeps its setting
    a->marking = enabled == 1;
    return set_status(TH_OK, "");
  });
}

th_status th_watermark_payload(th_avatar handle, uint32_t* out_pack_id, uint32_t* out_version_code) {
  return guarded([&]() -> th_status {
    if (!out_pack_id) return set_status(TH_ERR_INVALID_ARGUMENT, "out_pack_id is NULL");
    if (!out_version_code) return set_status(TH_ERR_INVALID_ARGUMENT, "out_version_code is NULL");
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    *out_pack_id = a->payload.pack_id;
    *out_version_code = a->payload.version;
    return set_status(TH_OK, "");
  });
}

th_status th_verify_files(th_avatar handle, int32_t* out_files) {
  return guarded([&]() -> th_status {
    if (!out_files) return set_status(TH_ERR_INVALID_ARGUMENT, "out_files is NULL");
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    // a->info is fixed after th_open; reading and hashing need not hold up renders.
    size_t checked = 0;
    if (Failure f = talkinghead::verify_files(a->info, &checked)) return set_failure(f);
    *out_files = int32_t(checked);
    return set_status(TH_OK, "");
  });
}

th_status th_self_check(th_avatar handle, int32_t* out_cases, double* out_max_abs_error) {
  return guarded([&]() -> th_status {
    if (!out_cases) return set_status(TH_ERR_INVALID_ARGUMENT, "out_cases is NULL");
    if (!out_max_abs_error) return set_status(TH_ERR_INVALID_ARGUMENT, "out_max_abs_error is NULL");
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    // a->info is fixed after th_open: reading and parsing need not hold up renders.
    const talkinghead::PackBundle& bundle = a->info.bundle;
    const int size = a->info.resolution;
    std::vector<uint8_t> bytes;
    if (Failure f = talkinghead::read_bundle(a->info, &bytes)) return set_failure(f);
    std::vector<talkinghead::BundledCase> cases;
    if (Failure f = talkinghead::read_bundled_cases(bytes, size, bundle.file, &cases)) {
      return set_failure(f);
    }
    const size_t count = size_t(3) * size * size;
    const size_t in_count = size_t(talkinghead::kInputChannels) * size * size;
    Deviation d;
    {
      std::lock_guard<std::mutex> lock(a->mu);
      for (size_t c = 0; c < cases.size(); ++c) {
        std::memcpy(a->input.data(), cases[c].input, in_count * sizeof(float));
        const float* y = nullptr;
        if (th_status s = run_model(a.get(), &y)) return s;
        compare(y, cases[c].expected, count, bundle.atol, bundle.rtol, c, &d);
      }
    }
    *out_cases = int32_t(cases.size());
    *out_max_abs_error = d.max_abs;
    if (d.off == 0) return set_status(TH_OK, "");
    const size_t plane = size_t(size) * size;
    char detail[256];
    std::snprintf(detail, sizeof detail,
                  "max abs error %.3g; first off: test case %zu, channel %zu, row %zu, col %zu: "
                  "got %.6g, want %.6g",
                  d.max_abs, d.first_case, d.first_index / plane, d.first_index % plane / size,
                  d.first_index % size, double(d.first_got), double(d.first_want));
    char tolerance[96];
    std::snprintf(tolerance, sizeof tolerance, "atol %g, rtol %g", bundle.atol, bundle.rtol);
    return set_status(TH_ERR_SELF_CHECK,
                      "self-check failed: " + a->info.model.file + " is off the expected outputs of " +
                          bundle.file + " at " + std::to_string(d.off) + " of " +
                          std::to_string(count * cases.size()) + " values (" + tolerance + "); " +
                          detail);
  });
}

th_status th_rasterize(const float* landmarks, size_t landmark_floats, int32_t size,
                       double thickness, uint8_t* out_rgb, size_t out_bytes) {
  return guarded([&]() -> th_status {
    if (th_status s = check_landmark_arg(landmarks, landmark_floats)) return s;
    if (size < 16 || size > 4096) {
      return set_status(TH_ERR_INVALID_ARGUMENT, "size must be in [16, 4096] px, got " + std::to_string(size));
    }
    if (!std::isfinite(thickness) || thickness < 0.0) {
      return set_status(TH_ERR_INVALID_ARGUMENT, "thickness must be a finite number of px >= 0 (0: default)");
    }
    if (th_status s = check_output_arg(out_rgb, out_bytes, size)) return s;
    double pts[TH_LANDMARK_FLOATS];
    if (!widen_landmarks(landmarks, pts)) {
      return set_status(TH_ERR_INVALID_LANDMARKS, "landmarks contain NaN or inf");
    }
    talkinghead::rasterize_landmarks(
        pts, size, thickness == 0.0 ? talkinghead::default_thickness(size) : thickness, out_rgb);
    return set_status(TH_OK, "");
  });
}

th_status th_drive(th_avatar handle, const float* mesh, size_t mesh_floats, int32_t image_width,
                   int32_t image_height, int64_t timestamp_ms, uint8_t* out_rgb, size_t out_bytes,
                   float* out_target_mesh, size_t out_mesh_floats) {
  return guarded([&]() -> th_status {
    if (!mesh) return set_status(TH_ERR_INVALID_ARGUMENT, "mesh is NULL");
    if (!out_rgb) return set_status(TH_ERR_INVALID_ARGUMENT, "out_rgb is NULL");
    int n = 0, dims = 0;
    for (int points : {talkinghead::kMeshPoints, talkinghead::kMeshPointsNoIris}) {
      for (int d : {3, 2}) {
        if (mesh_floats == size_t(points) * d) n = points, dims = d;
      }
    }
    if (n == 0) {
      return set_status(TH_ERR_INVALID_ARGUMENT,
                        "mesh must hold 478 or 468 MediaPipe points of (x, y, z) or (x, y): "
                        "1434, 1404, 956 or 936 floats, got " + std::to_string(mesh_floats));
    }
    if (out_target_mesh && out_mesh_floats != TH_MESH_FLOATS) {
      return set_status(TH_ERR_INVALID_ARGUMENT, "out_target_mesh must hold 1434 floats (478 x 3), got " +
                                                     std::to_string(out_mesh_floats));
    }
    if (image_width < 1 || image_width > 65536 || image_height < 1 || image_height > 65536) {
      return set_status(TH_ERR_INVALID_ARGUMENT, "image size must be in [1, 65536] px, got " +
                                                     std::to_string(image_width) + " x " +
                                                     std::to_string(image_height));
    }
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    if (th_status s = check_output_arg(out_rgb, out_bytes, a->info.resolution)) return s;
    for (size_t k = 0; k < size_t(n) * dims; ++k) {
      if (!std::isfinite(mesh[k])) {
        return set_status(TH_ERR_INVALID_LANDMARKS, "mesh point " + std::to_string(k / dims) +
                                                        " has a NaN or infinite coordinate");
      }
    }
    std::lock_guard<std::mutex> lock(a->mu);
    talkinghead::Driver& driver = a->driver;
    if (driver.has_last_timestamp() && timestamp_ms <= driver.last_timestamp_ms()) {
      return set_status(TH_ERR_TIMESTAMP, "timestamp_ms must strictly increase: got " +
                                              std::to_string(timestamp_ms) + " after " +
                                              std::to_string(driver.last_timestamp_ms()));
    }
    if (th_status s = check_marking(a.get())) return s;
    std::vector<float> target(TH_MESH_FLOATS);
    std::string error;
    if (!driver.step(mesh, n, dims, image_width, image_height, timestamp_ms, a->neutral_mesh,
                     target.data(), &error)) {
      return set_status(TH_ERR_INVALID_LANDMARKS, error);
    }
    std::vector<double> pts(target.begin(), target.end());
    if (th_status s = render_mesh(a.get(), pts.data(), out_rgb)) return s;
    if (out_target_mesh) std::memcpy(out_target_mesh, target.data(), target.size() * sizeof(float));
    return set_status(TH_OK, "");
  });
}

th_status th_drive_reset(th_avatar handle) {
  return guarded([&]() -> th_status {
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    std::lock_guard<std::mutex> lock(a->mu);
    a->driver.reset();
    return set_status(TH_OK, "");
  });
}

th_status th_set_smoothing(th_avatar handle, double min_cutoff_hz, double beta, double d_cutoff_hz) {
  return guarded([&]() -> th_status {
    const bool off = min_cutoff_hz == 0.0 && beta == 0.0 && d_cutoff_hz == 0.0;
    const bool on = std::isfinite(min_cutoff_hz) && min_cutoff_hz > 0.0 && std::isfinite(beta) &&
                    beta >= 0.0 && std::isfinite(d_cutoff_hz) && d_cutoff_hz > 0.0;
    if (!off && !on) {
      char got[128];
      std::snprintf(got, sizeof got, "%g, %g, %g", min_cutoff_hz, beta, d_cutoff_hz);
      return set_status(TH_ERR_INVALID_ARGUMENT,
                        std::string("smoothing needs finite min_cutoff_hz > 0, beta >= 0 and "
                                    "d_cutoff_hz > 0, or all three 0 (off); got ") + got);
    }
    auto a = find_avatar(handle);
    if (!a) return closed_status(handle);
    std::lock_guard<std::mutex> lock(a->mu);
    a->driver.set_params(off ? talkinghead::OneEuroParams{0.0, 0.0, 0.0}
                             : talkinghead::OneEuroParams{min_cutoff_hz, beta, d_cutoff_hz});
    return set_status(TH_OK, "");
  });
}

th_status th_close(th_avatar handle) {
  return guarded([&]() -> th_status {
    std::shared_ptr<Avatar> a;
    {
      std::lock_guard<std::mutex> lock(g_registry_mu);
      auto it = g_registry.find(handle);
      if (it == g_registry.end()) return closed_status(handle);
      a = std::move(it->second);
      g_registry.erase(it);
    }
    // Freed here, or by a render still running on another thread when it finishes.
    a.reset();
    return set_status(TH_OK, "");
  });
}

}  // extern "C"
