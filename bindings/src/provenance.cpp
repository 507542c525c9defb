// pack_id of sdk/provenance.py. The hashed text must match Python's json.dumps byte for
// byte, so strings are escaped the way its ensure_ascii encoder does.
#include "provenance.h"

#include <cstdio>
#include <string>

#include "sha256.h"

namespace talkinghead {
namespace {

// Decode one code point of UTF-8 at s[*i] (surrogates, as the JSON reader writes lone
// ones, included); U+FFFD for a byte that starts no sequence.
uint32_t next_code_point(const std::string& s, size_t* i) {
  const auto byte = [&](size_t k) { return k < s.size() ? uint8_t(s[k]) : uint8_t(0); };
  const uint8_t c = byte(*i);
  int extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : -1;
  uint32_t cp = extra == 0 ? c : extra == 1 ? (c & 0x1F) : extra == 2 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k <= extra; ++k) {
    if ((byte(*i + k) & 0xC0) != 0x80) extra = -1;
    else cp = (cp << 6) | (byte(*i + k) & 0x3F);
  }
  if (extra < 0) {
    *i += 1;
    return 0xFFFD;
  }
  *i += size_t(extra) + 1;
  return cp;
}

void append_escaped(std::string* out, const std::string& s) {
  char buf[16];
  const auto unit = [&](uint32_t u) {
    std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(u));
    *out += buf;
  };
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    const uint32_t cp = next_code_point(s, &i);
    switch (cp) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      default:
        if (cp >= 0x20 && cp < 0x7F) {
          out->push_back(char(cp));
        } else if (cp < 0x10000) {
          unit(cp);
        } else {
          unit(0xD800 + ((cp - 0x10000) >> 10));
          unit(0xDC00 + ((cp - 0x10000) & 0x3FF));
        }
    }
  }
  out->push_back('"');
}

}  // namespace

std::string pack_id_json(const PackInfo& info) {
  // Keys sorted: "files" < "name"; info.files is already sorted by name (UTF-8 byte
  // order is code point order, which is how Python sorts str).
  std::string out = "{\"files\":{";
  for (size_t i = 0; i < info.files.size(); ++i) {
    if (i) out.push_back(',');
    append_escaped(&out, info.files[i].first);
    out.push_back(':');
    append_escaped(&out, info.files[i].second);
  }
  out += "},\"name\":";
  append_escaped(&out, info.name);
  out.push_back('}');
  return out;
}

uint32_t pack_id(const PackInfo& info) {
  const std::string text = pack_id_json(info);
  const auto digest = sha256(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  return (uint32_t(digest[0]) << 16) | (uint32_t(digest[1]) << 8) | digest[2];
}

}  // namespace talkinghead
