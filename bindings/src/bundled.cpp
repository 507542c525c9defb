// A flatbuffer reader for the few tables of a BundledProgram that the self-check needs.
// Nothing is trusted: every read goes through FlatBuffer, which checks bounds and alignment
// against the buffer, so malformed bytes end in a message, never in a read outside it.
#include "bundled.h"

#include <string>

namespace talkinghead {
namespace {

// The union ValueUnion's member "Tensor" and executorch_flatbuffer.ScalarType.FLOAT.
constexpr uint8_t kValueTensor = 1;
constexpr int8_t kScalarFloat = 6;

// Thrown by FlatBuffer and the walk below; read_bundled_cases turns it into TH_ERR_MODEL.
struct Malformed {
  std::string what;
};

class FlatBuffer {
 public:
  struct Table {
    size_t pos, vtable, vtable_size, table_size;
  };
  struct Vector {
    size_t start, length;  // first element, element count
  };

  FlatBuffer(const uint8_t* data, size_t size) : d_(data), n_(size) {}

  Table root() const { return table(0, "the root table"); }

  // The table a uoffset at `at` points to.
  Table table(size_t at, const std::string& what) const {
    const size_t pos = follow(at, what);
    need(pos, 4, 4, what);
    // The table starts with a signed offset back (or forward) to its vtable.
    const int64_t vt = int64_t(pos) - int64_t(int32_t(u32(pos)));
    if (vt < 0 || uint64_t(vt) >= n_) throw Malformed{what + ": its vtable lies outside the file"};
    const size_t vtable = size_t(vt);
    need(vtable, 4, 2, what + "'s vtable");
    const size_t vtable_size = u16(vtable), table_size = u16(vtable + 2);
    if (vtable_size < 4 || vtable_size % 2 != 0) {
      throw Malformed{what + ": vtable size " + std::to_string(vtable_size) + " is invalid"};
    }
    need(vtable, vtable_size, 2, what + "'s vtable");
    if (table_size < 4) throw Malformed{what + ": table size " + std::to_string(table_size) + " is invalid"};
    need(pos, table_size, 4, what);
    return {pos, vtable, vtable_size, table_size};
  }

  // Where field `index` of `t` holds its `width` bytes, or 0 when the field is absent.
  size_t field(const Table& t, int index, size_t width, const std::string& what) const {
    const size_t slot = 4 + 2 * size_t(index);
    if (slot + 2 > t.vtable_size) return 0;
    const size_t off = u16(t.vtable + slot);
    if (off == 0) return 0;
    if (off < 4 || off + width > t.table_size) throw Malformed{what + " lies outside its table"};
    if ((t.pos + off) % width != 0) throw Malformed{what + " is misaligned"};
    return t.pos + off;
  }

  // A vector a uoffset at `at` points to; `elem` bytes an element, aligned to `align`.
  Vector vector(size_t at, size_t elem, size_t align, const std::string& what) const {
    const size_t v = follow(at, what);
    need(v, 4, 4, what + "'s length");
    const uint64_t length = u32(v);
    const size_t start = v + 4;
    if (length > (n_ - start) / elem) {
      throw Malformed{what + " of " + std::to_string(length) + " elements at byte " +
                      std::to_string(v) + " runs past the end of the " + std::to_string(n_) +
                      "-byte file"};
    }
    if (start % align != 0) throw Malformed{what + " at byte " + std::to_string(start) + " is misaligned"};
    return {start, size_t(length)};
  }

  // Element `i` of a vector of tables.
  Table table_in(const Vector& v, size_t i, const std::string& what) const {
    return table(v.start + 4 * i, what);
  }

  // A string: a vector of bytes followed by a NUL.
  std::string string(size_t at, const std::string& what) const {
    const Vector v = vector(at, 1, 1, what);
    if (v.start + v.length >= n_ || d_[v.start + v.length] != 0) {
      throw Malformed{what + " is not NUL-terminated"};
    }
    return std::string(reinterpret_cast<const char*>(d_ + v.start), v.length);
  }

  // Little-endian reads; callers have checked the bounds with need() or field().
  uint8_t u8(size_t at) const { return d_[at]; }
  uint32_t u16(size_t at) const { return uint32_t(d_[at]) | uint32_t(d_[at + 1]) << 8; }
  uint32_t u32(size_t at) const {
    return uint32_t(d_[at]) | uint32_t(d_[at + 1]) << 8 | uint32_t(d_[at + 2]) << 16 |
           uint32_t(d_[at + 3]) << 24;
  }
  const uint8_t* data(size_t at) const { return d_ + at; }

 private:
  // `bytes` bytes at `at` lie inside the buffer, `at` aligned to `align`.
  void need(size_t at, size_t bytes, size_t align, const std::string& what) const {
    if (at > n_ || bytes > n_ - at) {
      throw Malformed{what + " at byte " + std::to_string(at) + " runs past the end of the " +
                      std::to_string(n_) + "-byte file"};
    }
    if (at % align != 0) throw Malformed{what + " at byte " + std::to_string(at) + " is misaligned"};
  }

  // The target of the uoffset (unsigned, forward) stored at `at`.
  size_t follow(size_t at, const std::string& what) const {
    need(at, 4, 4, "the offset to " + what);
    const uint64_t target = uint64_t(at) + u32(at);
    if (target >= n_) {
      throw Malformed{"the offset to " + what + " at byte " + std::to_string(at) +
                      " points past the end of the " + std::to_string(n_) + "-byte file"};
    }
    return size_t(target);
  }

  const uint8_t* d_;
  size_t n_;
};

std::string shape_text(const FlatBuffer& fb, const FlatBuffer::Vector& sizes) {
  std::string s;
  for (size_t i = 0; i < sizes.length && i < 8; ++i) {
    s += (i ? ", " : "") + std::to_string(int32_t(fb.u32(sizes.start + 4 * i)));
  }
  return "[" + s + (sizes.length > 8 ? ", ...]" : "]");
}

// The one float32 [1, C, S, S] contiguous tensor in field `index` ([Value]) of a test case;
// returns where its data starts.
const uint8_t* image_tensor(const FlatBuffer& fb, const FlatBuffer::Table& test_case, int index,
                            int channels, int size, const std::string& what) {
  const size_t values_at = fb.field(test_case, index, 4, what);
  if (!values_at) throw Malformed{what + " is missing"};
  const FlatBuffer::Vector values = fb.vector(values_at, 4, 4, what);
  if (values.length != 1) {
    throw Malformed{what + " holds " + std::to_string(values.length) + " values, expected 1 tensor"};
  }
  const FlatBuffer::Table value = fb.table_in(values, 0, what);
  const size_t type_at = fb.field(value, 0, 1, what + "'s value type");
  const uint8_t type = type_at ? fb.u8(type_at) : 0;
  const size_t tensor_at = fb.field(value, 1, 4, what + "'s value");
  if (type != kValueTensor || !tensor_at) {
    throw Malformed{what + " is not a tensor (value type " + std::to_string(type) + ")"};
  }
  const FlatBuffer::Table tensor = fb.table(tensor_at, what + "'s tensor");
  const size_t dtype_at = fb.field(tensor, 0, 1, what + "'s scalar type");
  const int8_t dtype = dtype_at ? int8_t(fb.u8(dtype_at)) : 0;
  const size_t sizes_at = fb.field(tensor, 1, 4, what + "'s sizes");
  const FlatBuffer::Vector sizes = sizes_at ? fb.vector(sizes_at, 4, 4, what + "'s sizes")
                                            : FlatBuffer::Vector{0, 0};
  const int32_t want[4] = {1, channels, size, size};
  bool shape_ok = sizes.length == 4;
  for (size_t i = 0; shape_ok && i < 4; ++i) shape_ok = int32_t(fb.u32(sizes.start + 4 * i)) == want[i];
  if (dtype != kScalarFloat || !shape_ok) {
    throw Malformed{what + " is " + shape_text(fb, sizes) + " of scalar type " + std::to_string(dtype) +
                    ", expected float32 (6) [1, " + std::to_string(channels) + ", " + std::to_string(size) + ", " +
                    std::to_string(size) + "] (the manifest's resolution)"};
  }
  // dim_order, when given, must be the contiguous NCHW order the model is fed in.
  if (const size_t order_at = fb.field(tensor, 3, 4, what + "'s dim_order")) {
    const FlatBuffer::Vector order = fb.vector(order_at, 1, 1, what + "'s dim_order");
    bool contiguous = order.length == 0 || order.length == 4;
    for (size_t i = 0; contiguous && i < order.length; ++i) contiguous = fb.u8(order.start + i) == i;
    if (!contiguous) throw Malformed{what + " is not in contiguous NCHW dim order"};
  }
  const size_t data_at = fb.field(tensor, 2, 4, what + "'s data");
  if (!data_at) throw Malformed{what + " has no data"};
  const FlatBuffer::Vector data = fb.vector(data_at, 1, 4, what + "'s data");
  const size_t bytes = size_t(channels) * size * size * sizeof(float);
  if (data.length != bytes) {
    throw Malformed{what + " holds " + std::to_string(data.length) + " data bytes, expected " +
                    std::to_string(bytes)};
  }
  return fb.data(data.start);
}

void collect_cases(const FlatBuffer& fb, int size, std::vector<BundledCase>* out) {
  // BundledProgram: version (0), method_test_suites (1), program (2).
  const FlatBuffer::Table root = fb.root();
  if (const size_t program_at = fb.field(root, 2, 4, "the embedded program")) {
    fb.vector(program_at, 1, 1, "the embedded program");  // not run, but must lie inside
  }
  const size_t suites_at = fb.field(root, 1, 4, "method_test_suites");
  if (!suites_at) throw Malformed{"no method_test_suites"};
  const FlatBuffer::Vector suites = fb.vector(suites_at, 4, 4, "method_test_suites");
  // BundledMethodTestSuite: method_name (0), test_cases (1).
  for (size_t i = 0; i < suites.length; ++i) {
    const std::string what = "test suite " + std::to_string(i);
    const FlatBuffer::Table suite = fb.table_in(suites, i, what);
    const size_t name_at = fb.field(suite, 0, 4, what + "'s method_name");
    if (!name_at || fb.string(name_at, what + "'s method_name") != "forward") continue;
    const size_t cases_at = fb.field(suite, 1, 4, "the test cases of 'forward'");
    const FlatBuffer::Vector cases = cases_at ? fb.vector(cases_at, 4, 4, "the test cases of 'forward'")
                                              : FlatBuffer::Vector{0, 0};
    if (cases.length == 0) throw Malformed{"the test suite of 'forward' has no test cases"};
    if (cases.length > kMaxBundledCases) {
      throw Malformed{"the test suite of 'forward' has " + std::to_string(cases.length) +
                      " test cases, more than the " + std::to_string(kMaxBundledCases) + " allowed"};
    }
    // BundledMethodTestCase: inputs (0), expected_outputs (1).
    for (size_t c = 0; c < cases.length; ++c) {
      const std::string name = "test case " + std::to_string(c);
      const FlatBuffer::Table test_case = fb.table_in(cases, c, name);
      BundledCase bc;
      bc.input = image_tensor(fb, test_case, 0, kInputChannels, size, name + " input");
      bc.expected = image_tensor(fb, test_case, 1, 3, size, name + " expected output");
      out->push_back(bc);
    }
    return;
  }
  throw Malformed{"no test suite for method 'forward'"};
}

}  // namespace

Failure read_bundled_cases(const std::vector<uint8_t>& data, int size, const std::string& source,
                           std::vector<BundledCase>* cases) {
  cases->clear();
  auto digit = [](uint8_t c) { return c >= '0' && c <= '9'; };
  if (data.size() < 8 || data[4] != 'B' || data[5] != 'P' || !digit(data[6]) || !digit(data[7])) {
    return Failure{TH_ERR_MODEL, source + " is not an ExecuTorch bundled program (no 'BP..' file identifier)"};
  }
  if (data[6] != '0' || data[7] != '8') {
    return Failure{TH_ERR_UNSUPPORTED, source + " is bundled-program format 'BP" +
                                           std::string(1, char(data[6])) + char(data[7]) +
                                           "'; this library reads 'BP08'"};
  }
  try {
    collect_cases(FlatBuffer(data.data(), data.size()), size, cases);
  } catch (const Malformed& m) {
    cases->clear();
    return Failure{TH_ERR_MODEL, source + ": " + m.what};
  }
  return {};
}

}  // namespace talkinghead
