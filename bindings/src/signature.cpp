#include "signature.h"

#include <sodium.h>

#include <cstring>

#include "json.h"

namespace talkinghead {
namespace {

constexpr size_t kMaxSignatureFileBytes = 4096;

Failure refuse(const std::string& message) { return Failure{TH_ERR_SIGNATURE, message}; }

bool from_hex(const std::string& hex, std::vector<uint8_t>* out) {
  if (hex.size() % 2) return false;
  out->resize(hex.size() / 2);
  size_t bin_len = 0;
  return sodium_hex2bin(out->data(), out->size(), hex.data(), hex.size(), nullptr, &bin_len,
                        nullptr) == 0 &&
         bin_len == out->size();
}

}  // namespace

Failure check_signature(const std::string& dir, const std::vector<uint8_t>& manifest,
                        const uint8_t* keys, size_t num_keys) {
  if (sodium_init() < 0) return Failure{TH_ERR_INTERNAL, "libsodium failed to initialise"};
  std::vector<uint8_t> raw;
  // Regular file, no link, bounded: the same reader as every other pack file.
  if (Failure f = read_pack_file(dir + "/manifest.sig", kMaxSignatureFileBytes, &raw)) {
    return refuse("pack is not signed: " + f.message);
  }
  JsonValue doc;
  std::string err;
  if (!parse_json(std::string(raw.begin(), raw.end()), &doc, &err) ||
      doc.type != JsonValue::Type::Object) {
    return refuse("manifest.sig is not a JSON object: " + err);
  }
  const JsonValue* algorithm = doc.find("algorithm");
  const JsonValue* signature = doc.find("signature");
  if (!algorithm || algorithm->type != JsonValue::Type::String || algorithm->string != "ed25519") {
    return refuse("manifest.sig: 'algorithm' must be \"ed25519\"");
  }
  std::vector<uint8_t> sig;
  if (!signature || signature->type != JsonValue::Type::String ||
      !from_hex(signature->string, &sig) || sig.size() != crypto_sign_BYTES) {
    return refuse("manifest.sig: 'signature' must be 64 bytes in hex");
  }
  // The message: the context string with its NUL, then the manifest's exact bytes.
  std::vector<uint8_t> message(kSignedContext, kSignedContext + sizeof(kSignedContext));
  message.insert(message.end(), manifest.begin(), manifest.end());
  for (size_t k = 0; k < num_keys; ++k) {
    if (crypto_sign_verify_detached(sig.data(), message.data(), message.size(),
                                    keys + k * kPublicKeyBytes) == 0) {
      return {};
    }
  }
  return refuse("pack is not signed by a trusted key (tampered, or signed by another key)");
}

}  // namespace talkinghead
