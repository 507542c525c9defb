// SHA-256 (FIPS 180-4), enough to check pack files against their manifest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace talkinghead {

// Lowercase hex digest of `size` bytes at `data`.
std::string sha256_hex(const uint8_t* data, size_t size);

}  // namespace talkinghead
