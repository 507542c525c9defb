// What a pack's frames say about themselves: the watermark payload of sdk/provenance.py.
#pragma once

#include <cstdint>

#include "pack.h"

namespace talkinghead {

// 24-bit pack id: the first 3 bytes of sha256 over the canonical JSON of the pack's name
// and files, exactly the bytes Python's pack_id hashes.
uint32_t pack_id(const PackInfo& info);

// The canonical JSON pack_id hashes: json.dumps({"name", "files"}, sort_keys=True,
// separators=(",", ":")) with ensure_ascii (non-ASCII as \uXXXX, astral as surrogates).
std::string pack_id_json(const PackInfo& info);

}  // namespace talkinghead
