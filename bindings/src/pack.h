// Reading an avatar pack: manifest.json, the model entry for a precision, and the
// model's bytes checked against their sha256 before anything parses them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "constants.h"
#include "talkinghead.h"

namespace talkinghead {

// Schema versions this library reads (sdk/pack_schema.py SUPPORTED_SCHEMA_VERSIONS, in
// constants.h): 3, warp and refine (generator.rig). Schemas 1 and 2 held the old
// direct-synthesis generator and are refused with a clear error.
constexpr int64_t kMinSchemaVersion = kSupportedSchemaVersions[0];
constexpr int64_t kMaxSchemaVersion = kSupportedSchemaVersions[kSupportedSchemaVersionsCount - 1];
// The refiner's input channels: warped RGB, the landmark image, validity.
constexpr int kInputChannels = kRefinerInputChannels;

// A failed step: a status code and a message naming what was wrong.
struct Failure {
  th_status status = TH_OK;
  std::string message;
  explicit operator bool() const { return status != TH_OK; }
};

struct PackModel {
  std::string file;
  std::string sha256;
};

// The model entry's `info.bundled`: the ExecuTorch BundledProgram (.bpte) holding its parity
// test cases, and the tolerance of a test case, |got - want| <= atol + rtol * |want|.
struct PackBundle {
  bool present = false;  // the entry has `info.bundled`
  std::string file;
  std::string sha256;  // from the manifest's `files`
  double atol = 1e-4;  // defaults as sdk/parity.py
  double rtol = 0.0;
  // A malformed `info.bundled`: reported by th_self_check, so th_open still renders.
  Failure problem;
};

struct PackInfo {
  std::string dir;  // the pack folder, as given to read_manifest
  std::string name;
  int64_t schema_version = 0;
  int resolution = 0;
  PackModel model;               // the executorch entry of the requested precision
  PackBundle bundle;             // its bundled program, if any
  PackModel rig;                 // generator.rig: the warp rig (rig.safetensors) and its sha256
  std::vector<double> neutral;   // 68 x (x, y), crop px
  // 'files': normalised name -> sha256 hex, sorted by name (as AvatarManifest.files).
  std::vector<std::pair<std::string, std::string>> files;
};

// Parse and validate dir/manifest.json, pick the executorch model of `precision`.
Failure read_manifest(const std::string& dir, const std::string& precision, PackInfo* out);

// The bytes of dir/manifest.json (a regular file, no link, at most 16 MB).
Failure read_manifest_bytes(const std::string& dir, std::vector<uint8_t>* raw);

// read_manifest over bytes already read (and, for th_open_signed, signature-checked).
Failure parse_manifest(const std::string& dir, const std::vector<uint8_t>& raw,
                       const std::string& precision, PackInfo* out);

// Read a regular file (O_NONBLOCK, fstat; no link) of at most `limit` bytes.
Failure read_pack_file(const std::string& path, size_t limit, std::vector<uint8_t>* out);

// Read the model file of `info` (inside `info.dir`, no links) and check its sha256.
Failure read_model(const PackInfo& info, std::vector<uint8_t>* bytes);

// Read the warp rig of `info` (generator.rig, inside info.dir, no links), checking its sha256.
Failure read_rig(const PackInfo& info, std::vector<uint8_t>* bytes);

// Read the bundled program of `info` (inside info.dir, no links) and check its sha256;
// TH_ERR_UNSUPPORTED when the model entry has no `info.bundled`.
Failure read_bundle(const PackInfo& info, std::vector<uint8_t>* bytes);

// Check every file of the manifest's `files` listing (inside info.dir, no links) against
// its sha256, in name order; stops at the first that is missing or does not match.
// *checked counts the files that matched.
Failure verify_files(const PackInfo& info, size_t* checked);

// Reject bytes that are not an ExecuTorch program or are shorter than their header says.
Failure check_pte_header(const std::vector<uint8_t>& data, const std::string& source);

}  // namespace talkinghead
