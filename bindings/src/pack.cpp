// The subset of sdk/pack.py the native runtime relies on. Keys it does not use are
// ignored, so packs from newer exporters of the same schema keep opening.
#include "pack.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>

#include "json.h"
#include "sha256.h"

namespace talkinghead {
namespace {

constexpr size_t kMaxManifestBytes = size_t(16) << 20;
constexpr size_t kMaxModelBytes = size_t(1) << 30;  // as the zip limit of sdk/pack.py
constexpr int kMinResolution = 16;                  // the rasteriser's minimum
constexpr int kMaxResolution = 4096;

Failure fail(th_status status, std::string message) { return Failure{status, std::move(message)}; }

// Read a regular file, refusing links (O_NOFOLLOW) and anything over `limit` bytes.
// O_NONBLOCK: opening a FIFO for reading blocks until a writer appears, so the open must
// not wait; fstat then refuses everything that is not a regular file before any read.
Failure read_file(const std::string& path, size_t limit, std::vector<uint8_t>* out,
                  th_status missing_status) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    if (e == ELOOP) return fail(TH_ERR_PACK, path + " is a symbolic link");
    return fail(missing_status, "cannot open " + path + ": " + std::strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fail(TH_ERR_PACK, path + " is not a regular file");
  }
  if (uint64_t(st.st_size) > limit) {
    close(fd);
    return fail(TH_ERR_PACK, path + " is too large (" + std::to_string(st.st_size) +
                                 " bytes, limit " + std::to_string(limit) + ")");
  }
  out->resize(size_t(st.st_size));
  size_t got = 0;
  while (got < out->size()) {
    ssize_t n = read(fd, out->data() + got, out->size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return fail(TH_ERR_PACK, "cannot read " + path);
    }
    got += size_t(n);
  }
  close(fd);
  return {};
}

// Names come from a manifest that may be hostile: relative, POSIX, never climbing out.
bool safe_relpath(const std::string& name) {
  if (name.empty() || name.find('\0') != std::string::npos) return false;
  if (name.find('\\') != std::string::npos || name[0] == '/') return false;
  if (name.size() > 1 && name[1] == ':') return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, end - start, "..") == 0 && end - start == 2) return false;
    start = end + 1;
  }
  return true;
}

// The real path of dir/rel when it stays inside the real path of dir.
bool inside(const std::string& dir, const std::string& rel, std::string* resolved) {
  char root[PATH_MAX], file[PATH_MAX];
  if (!realpath(dir.c_str(), root) || !realpath((dir + "/" + rel).c_str(), file)) return false;
  std::string r(root), f(file);
  if (r.back() != '/') r += '/';
  if (f.compare(0, r.size(), r) != 0) return false;
  *resolved = f;
  return true;
}

// safe_relpath's normal form in sdk/pack.py (PurePosixPath parts): no empty or '.' parts.
std::string normalise_relpath(const std::string& name) {
  std::string out;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    std::string part = name.substr(start, end - start);
    if (!part.empty() && part != ".") out += (out.empty() ? "" : "/") + part;
    start = end + 1;
  }
  return out;
}

bool is_sha256(const JsonValue* v) {
  if (!v || v->type != JsonValue::Type::String || v->string.size() != 64) return false;
  for (char c : v->string) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// An ExecuTorch program entry: "format": "pte", or (schema 1) a file named *.pte.
bool is_program(const JsonValue& entry) {
  if (const JsonValue* f = entry.find("format")) {
    return f->type == JsonValue::Type::String && f->string == "pte";
  }
  const JsonValue* file = entry.find("file");
  const std::string suffix = ".pte";
  return file && file->type == JsonValue::Type::String && file->string.size() > suffix.size() &&
         file->string.compare(file->string.size() - suffix.size(), suffix.size(), suffix) == 0;
}

const JsonValue* get(const JsonValue& obj, const char* key, JsonValue::Type type) {
  const JsonValue* v = obj.find(key);
  return (v && v->type == type) ? v : nullptr;
}

bool is_string(const JsonValue& obj, const char* key, const char* expected) {
  const JsonValue* v = get(obj, key, JsonValue::Type::String);
  return v && v->string == expected;
}

// The model entry's `info.bundled` ({"file", "atol", "rtol", ...}), its file looked up in the
// normalised `files` listing. Problems are kept for th_self_check rather than failing th_open.
PackBundle bundle_of(const JsonValue& entry, const std::string& model,
                     const std::map<std::string, std::string>& listing) {
  PackBundle b;
  const JsonValue* info = get(entry, "info", JsonValue::Type::Object);
  const JsonValue* bundled = info ? info->find("bundled") : nullptr;
  if (!bundled || bundled->type == JsonValue::Type::Null) return b;  // as Python's .get()
  b.present = true;
  const std::string where = "manifest: 'info.bundled' of model '" + model + "'";
  if (bundled->type != JsonValue::Type::Object) {
    b.problem = fail(TH_ERR_PACK, where + " must be an object");
    return b;
  }
  const JsonValue* file = get(*bundled, "file", JsonValue::Type::String);
  if (!file || !safe_relpath(file->string) || normalise_relpath(file->string).empty()) {
    b.problem = fail(TH_ERR_PACK, where + " has a missing or unsafe 'file'");
    return b;
  }
  auto listed = listing.find(normalise_relpath(file->string));
  if (listed == listing.end()) {
    b.problem = fail(TH_ERR_PACK, where + ": '" + file->string + "' is not listed in 'files' with a sha256");
    return b;
  }
  for (auto [key, value] : {std::make_pair("atol", &b.atol), std::make_pair("rtol", &b.rtol)}) {
    const JsonValue* v = bundled->find(key);
    if (!v) continue;
    if (v->type != JsonValue::Type::Number || !std::isfinite(v->number) || v->number < 0.0) {
      b.problem = fail(TH_ERR_PACK, where + ": '" + key + "' must be a finite number >= 0");
      return b;
    }
    *value = v->number;
  }
  b.file = file->string;
  b.sha256 = listed->second;
  return b;
}

// Read dir/name (inside dir, no links) and check it against `sha256` before anyone parses it.
Failure read_verified(const std::string& dir, const std::string& name, const std::string& sha256,
                      std::vector<uint8_t>* bytes) {
  // A link is refused even when it points inside the pack, as sdk/pack.py refuses it.
  struct stat st;
  if (lstat((dir + "/" + name).c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    return fail(TH_ERR_PACK, "pack file '" + name + "' is a symbolic link");
  }
  std::string path;
  if (!inside(dir, name, &path)) {
    return fail(TH_ERR_PACK, "pack file '" + name + "' is missing or outside the pack");
  }
  if (Failure f = read_file(path, kMaxModelBytes, bytes, TH_ERR_PACK)) return f;
  if (sha256_hex(bytes->data(), bytes->size()) != sha256) {
    bytes->clear();
    return fail(TH_ERR_INTEGRITY, "pack file '" + name + "' does not match its sha256 (corrupt or modified)");
  }
  return {};
}

}  // namespace

Failure read_pack_file(const std::string& path, size_t limit, std::vector<uint8_t>* out) {
  return read_file(path, limit, out, TH_ERR_PACK);
}

Failure read_manifest_bytes(const std::string& dir, std::vector<uint8_t>* raw) {
  if (Failure f = read_file(dir + "/manifest.json", kMaxManifestBytes, raw, TH_ERR_PACK)) {
    f.message = "not an avatar pack: " + f.message;
    return f;
  }
  return {};
}

Failure read_manifest(const std::string& dir, const std::string& precision, PackInfo* out) {
  std::vector<uint8_t> raw;
  if (Failure f = read_manifest_bytes(dir, &raw)) return f;
  return parse_manifest(dir, raw, precision, out);
}

Failure parse_manifest(const std::string& dir, const std::vector<uint8_t>& raw,
                       const std::string& precision, PackInfo* out) {
  const std::string path = dir + "/manifest.json";
  JsonValue m;
  std::string err;
  if (!parse_json(std::string(raw.begin(), raw.end()), &m, &err)) {
    return fail(TH_ERR_PACK, path + " is not valid JSON: " + err);
  }
  if (m.type != JsonValue::Type::Object) return fail(TH_ERR_PACK, "manifest: top level must be an object");

  const JsonValue* version = get(m, "schema_version", JsonValue::Type::Number);
  if (!version || !version->is_integer) {
    return fail(TH_ERR_PACK, "manifest: missing or non-integer key 'schema_version'");
  }
  if (version->integer > kMaxSchemaVersion) {
    return fail(TH_ERR_UNSUPPORTED,
                "pack schema_version " + std::to_string(version->integer) +
                    " is newer than this library supports (" + std::to_string(kMaxSchemaVersion) +
                    "); upgrade the talkinghead runtime to open it");
  }
  if (version->integer == 1 || version->integer == 2) {
    return fail(TH_ERR_UNSUPPORTED,
                "pack schema_version " + std::to_string(version->integer) +
                    " holds the old direct-synthesis generator, which this library no longer runs; "
                    "re-export the avatar (talkinghead demo --photo, or talkinghead export) to make a "
                    "schema 3 warp-and-refine pack");
  }
  if (version->integer < kMinSchemaVersion) {
    return fail(TH_ERR_PACK, "unknown pack schema_version " + std::to_string(version->integer));
  }
  if (!is_string(m, "format", kPackFormat)) {
    return fail(TH_ERR_PACK, std::string("manifest: key 'format' must be '") + kPackFormat + "'");
  }
  const JsonValue* name = get(m, "name", JsonValue::Type::String);
  if (!name) return fail(TH_ERR_PACK, "manifest: missing string key 'name'");

  const JsonValue* res = get(m, "resolution", JsonValue::Type::Number);
  if (!res || !res->is_integer || res->integer < kMinResolution || res->integer > kMaxResolution) {
    return fail(TH_ERR_PACK, "manifest: key 'resolution' must be an integer in [" +
                                 std::to_string(kMinResolution) + ", " +
                                 std::to_string(kMaxResolution) + "]");
  }
  const int size = int(res->integer);
  if (const JsonValue* lc = m.find("landmark_convention")) {
    const JsonValue* lsize = get(*lc, "size", JsonValue::Type::Number);
    if (!lsize || !lsize->is_integer || lsize->integer != size) {
      return fail(TH_ERR_PACK, "manifest: key 'landmark_convention.size' must equal 'resolution'");
    }
  }

  const JsonValue* files = get(m, "files", JsonValue::Type::Object);
  if (!files) return fail(TH_ERR_PACK, "manifest: missing object key 'files'");
  // Checked as sdk/pack.py does: the listing names the pack, and its id (the watermark's
  // payload) is a hash over it.
  std::map<std::string, std::string> listing;  // a repeated name keeps its last value
  for (const auto& kv : files->object) {
    const std::string rel = normalise_relpath(kv.first);
    if (!safe_relpath(kv.first) || rel.empty()) {
      return fail(TH_ERR_PACK, "manifest: unsafe path in 'files': '" + kv.first + "'");
    }
    if (rel == "manifest.json") return fail(TH_ERR_PACK, "manifest: 'files' must not list manifest.json itself");
    if (!is_sha256(&kv.second)) {
      return fail(TH_ERR_PACK, "manifest: key 'files." + kv.first + "' is not a lowercase hex sha256");
    }
    listing[rel] = kv.second.string;
  }
  const JsonValue* models = get(m, "models", JsonValue::Type::Array);
  if (!models || models->array.empty()) {
    return fail(TH_ERR_PACK, "manifest: key 'models' must list at least one model");
  }
  // The first ExecuTorch program (.pte, not a bundled .bpte) of this precision, an XNNPACK
  // one when there is one: that is the delegate this runtime links.
  const JsonValue* entry = nullptr;
  std::string have;
  for (const JsonValue& mv : models->array) {
    if (mv.type != JsonValue::Type::Object) return fail(TH_ERR_PACK, "manifest: models[] must hold objects");
    const JsonValue* rt = get(mv, "runtime", JsonValue::Type::String);
    const JsonValue* pr = get(mv, "precision", JsonValue::Type::String);
    if (rt && pr) have += (have.empty() ? "" : ", ") + rt->string + "/" + pr->string;
    if (!is_string(mv, "runtime", "executorch") || !pr || pr->string != precision) continue;
    if (!is_program(mv)) continue;
    if (!entry || (!is_string(*entry, "backend", "xnnpack") && is_string(mv, "backend", "xnnpack"))) {
      entry = &mv;
    }
  }
  if (!entry) {
    return fail(TH_ERR_UNSUPPORTED, "pack has no executorch/" + precision + " model (has: " + have + ")");
  }
  const JsonValue* file = get(*entry, "file", JsonValue::Type::String);
  if (!file || !safe_relpath(file->string)) {
    return fail(TH_ERR_PACK, "manifest: the executorch/" + precision + " model has a missing or unsafe 'file'");
  }
  const JsonValue* digest = entry->find("sha256");
  if (!is_sha256(digest)) {
    return fail(TH_ERR_PACK, "manifest: model '" + file->string + "' has no lowercase hex 'sha256'");
  }
  const JsonValue* listed = files->find(file->string);
  if (!is_sha256(listed) || listed->string != digest->string) {
    return fail(TH_ERR_PACK, "manifest: model '" + file->string + "' is not listed in 'files' with the same sha256");
  }
  // Schema 2 lets an entry give its own tensor specs; this runtime feeds float32 NCHW.
  for (const char* key : {"input", "output"}) {
    const JsonValue* spec = get(*entry, key, JsonValue::Type::Object);
    if (spec && (!is_string(*spec, "layout", "NCHW") || !is_string(*spec, "dtype", "float32"))) {
      return fail(TH_ERR_UNSUPPORTED, "model '" + file->string + "' " + key +
                                          " is not float32 NCHW, the only layout this runtime feeds");
    }
  }

  // generator.rig: the warp rig, hash-checked like every model file.
  const JsonValue* generator = get(m, "generator", JsonValue::Type::Object);
  const JsonValue* rig = generator ? get(*generator, "rig", JsonValue::Type::String) : nullptr;
  if (!rig || !safe_relpath(rig->string) || normalise_relpath(rig->string).empty()) {
    return fail(TH_ERR_PACK, "manifest: key 'generator.rig' must be a safe relative path");
  }
  const std::string rig_rel = normalise_relpath(rig->string);
  auto rig_listed = listing.find(rig_rel);
  if (rig_listed == listing.end()) {
    return fail(TH_ERR_PACK, "manifest: generator.rig '" + rig->string + "' is not listed in 'files'");
  }

  const JsonValue* identity = get(m, "identity", JsonValue::Type::Object);
  const JsonValue* pts = identity ? get(*identity, "neutral_landmarks", JsonValue::Type::Array) : nullptr;
  if (!pts || pts->array.size() != size_t(TH_NUM_LANDMARKS)) {
    return fail(TH_ERR_PACK, "manifest: key 'identity.neutral_landmarks' must be a (68, 2) list");
  }
  out->neutral.clear();
  for (const JsonValue& p : pts->array) {
    if (p.type != JsonValue::Type::Array || p.array.size() != 2) {
      return fail(TH_ERR_PACK, "manifest: key 'identity.neutral_landmarks' must be a (68, 2) list");
    }
    for (const JsonValue& v : p.array) {
      if (v.type != JsonValue::Type::Number || !std::isfinite(v.number)) {
        return fail(TH_ERR_PACK, "manifest: key 'identity.neutral_landmarks' holds a non-number");
      }
      out->neutral.push_back(v.number);
    }
  }
  out->dir = dir;
  out->name = name->string;
  out->bundle = bundle_of(*entry, file->string, listing);
  out->files.assign(listing.begin(), listing.end());
  out->schema_version = version->integer;
  out->resolution = size;
  out->model = PackModel{file->string, digest->string};
  out->rig = PackModel{rig_rel, rig_listed->second};
  return {};
}

Failure read_model(const PackInfo& info, std::vector<uint8_t>* bytes) {
  return read_verified(info.dir, info.model.file, info.model.sha256, bytes);
}

Failure read_rig(const PackInfo& info, std::vector<uint8_t>* bytes) {
  return read_verified(info.dir, info.rig.file, info.rig.sha256, bytes);
}

Failure read_bundle(const PackInfo& info, std::vector<uint8_t>* bytes) {
  const PackBundle& b = info.bundle;
  if (!b.present) {
    return fail(TH_ERR_UNSUPPORTED, "model '" + info.model.file +
                                        "' has no bundled program ('info.bundled' in the manifest): "
                                        "re-export the pack with a current talkinghead to self-check it");
  }
  if (b.problem) return b.problem;
  return read_verified(info.dir, b.file, b.sha256, bytes);
}

Failure verify_files(const PackInfo& info, size_t* checked) {
  *checked = 0;
  std::vector<uint8_t> bytes;
  for (const auto& listed : info.files) {
    if (Failure f = read_verified(info.dir, listed.first, listed.second, &bytes)) return f;
    ++*checked;
  }
  return {};
}

Failure check_pte_header(const std::vector<uint8_t>& d, const std::string& source) {
  // A .pte starts with a 4-byte root offset and the identifier "ET" + 2 digits, then
  // optionally the extended header "eh00": u32 length, u64 program size, u64 segment
  // base offset, u64 segment data size (little endian).
  constexpr size_t kMinBytes = 64;
  if (d.size() < kMinBytes) {
    return fail(TH_ERR_MODEL, source + " is not an ExecuTorch program: " + std::to_string(d.size()) + " bytes is too short");
  }
  auto digit = [](uint8_t c) { return c >= '0' && c <= '9'; };
  if (!(d[4] == 'E' && d[5] == 'T' && digit(d[6]) && digit(d[7]))) {
    return fail(TH_ERR_MODEL, source + " is not an ExecuTorch program (no 'ET..' file identifier)");
  }
  auto u32 = [&](size_t at) {
    uint32_t x = 0;
    for (int i = 3; i >= 0; --i) x = (x << 8) | d[at + i];
    return x;
  };
  auto u64 = [&](size_t at) {
    uint64_t x = 0;
    for (int i = 7; i >= 0; --i) x = (x << 8) | d[at + i];
    return x;
  };
  if (std::memcmp(d.data() + 8, "eh00", 4) == 0) {
    uint32_t length = u32(12);
    uint64_t program_size = u64(16), segment_base = u64(24);
    uint64_t segment_size = length >= 32 ? u64(32) : 0;
    // Compared without overflow: a hostile header may hold huge values.
    bool truncated = program_size > d.size() || segment_base > d.size() ||
                     segment_size > d.size() - segment_base;
    if (truncated) {
      return fail(TH_ERR_MODEL, source + " is truncated: its header says it is longer than its " +
                                    std::to_string(d.size()) + " bytes");
    }
  }
  return {};
}

}  // namespace talkinghead
