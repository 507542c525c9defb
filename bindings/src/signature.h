// Ed25519 pack signatures (libsodium), as sdk/signing.py writes them: manifest.sig holds
// {"algorithm": "ed25519", "public_key": hex, "signature": hex} over the context string
// followed by the exact bytes of manifest.json.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pack.h"

namespace talkinghead {

// The same bytes as sdk/signing.py's SIGNED_CONTEXT (the trailing NUL included).
constexpr char kSignedContext[] = "talkinghead.avatar-pack.manifest.v1";
constexpr size_t kPublicKeyBytes = 32;

// TH_OK when dir/manifest.sig is a valid signature of `manifest` by one of the
// `num_keys` 32-byte public keys at `keys`; TH_ERR_SIGNATURE otherwise (unsigned,
// malformed, or signed by another key).
Failure check_signature(const std::string& dir, const std::vector<uint8_t>& manifest,
                        const uint8_t* keys, size_t num_keys);

}  // namespace talkinghead
