// Reading the test cases of an ExecuTorch BundledProgram (.bpte, file identifier "BP08";
// schema: executorch/devtools/bundled_program/schema/bundled_program_schema.fbs) with a
// small flatbuffer reader that checks every offset, vtable, length and alignment against the
// buffer. The program embedded in the bundle is not used: th_self_check runs the pack's .pte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pack.h"

namespace talkinghead {

// Test cases of a bundle are capped: each one runs the model, and a hostile bundle could
// point thousands of entries at the same case.
constexpr size_t kMaxBundledCases = 1024;

// One test case of method "forward": the refiner's float32 [1, 7, S, S] input
// (kInputChannels) and its [1, 3, S, S] expected output, as little-endian float32 bytes.
// Both point into the parsed buffer.
struct BundledCase {
  const uint8_t* input = nullptr;
  const uint8_t* expected = nullptr;
};

// Parse `data` and collect the test cases of method "forward", each checked to be one
// float32 [1, 7, size, size] contiguous input and one [1, 3, size, size] expected output. Malformed bytes
// or other shapes -> TH_ERR_MODEL; a bundle format newer than BP08 -> TH_ERR_UNSUPPORTED.
// `source` names the file in messages.
Failure read_bundled_cases(const std::vector<uint8_t>& data, int size, const std::string& source,
                           std::vector<BundledCase>* cases);

}  // namespace talkinghead
