// A small strict JSON reader (RFC 8259), enough for manifest.json. No writer.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace talkinghead {

struct JsonValue {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  bool is_integer = false;  // written without fraction or exponent, and fits int64
  int64_t integer = 0;
  std::string string;
  std::vector<JsonValue> array;
  std::vector<std::pair<std::string, JsonValue>> object;  // in file order

  // The member named `key` (the last one when repeated, as Python's json does), or null.
  const JsonValue* find(const std::string& key) const;
};

// Parse `text`; on failure return false and describe where in `error`.
bool parse_json(const std::string& text, JsonValue* out, std::string* error);

}  // namespace talkinghead
