// SHA-256 (FIPS 180-4), enough to check pack files against their manifest.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace talkinghead {

// The 32-byte digest of `size` bytes at `data`.
std::array<uint8_t, 32> sha256(const uint8_t* data, size_t size);

// Lowercase hex digest of `size` bytes at `data`.
std::string sha256_hex(const uint8_t* data, size_t size);

}  // namespace talkinghead
