#include "kbus/json.hpp"

#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "json_parse.hpp"
#include "kbus/codec.hpp"

namespace kbus {

namespace {
const rapidjson::Value& V(const void* p) { return *static_cast<const rapidjson::Value*>(p); }

// Length of the valid UTF-8 sequence at the start of `p` (`left` bytes available), or 0 when
// none starts there (RFC 3629, table 3-7 of the Unicode standard).
std::size_t SequenceLength(const unsigned char* p, std::size_t left) {
  const unsigned char c = p[0];
  auto tail = [&](std::size_t i) { return i < left && (p[i] & 0xC0) == 0x80; };
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;  // a continuation byte, or the lead of an overlong 2-byte form
  if (c < 0xE0) return tail(1) ? 2 : 0;
  if (c < 0xF0) {
    if (!tail(1) || !tail(2)) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;   // overlong
    if (c == 0xED && p[1] >= 0xA0) return 0;  // a UTF-16 surrogate
    return 3;
  }
  if (c < 0xF5) {
    if (!tail(1) || !tail(2) || !tail(3)) return 0;
    if (c == 0xF0 && p[1] < 0x90) return 0;   // overlong
    if (c == 0xF4 && p[1] >= 0x90) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace

bool IsValidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  std::size_t i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    // ASCII, the common case, eight bytes at a time.
    if (i + 8 <= n) {
      std::uint64_t word;
      std::memcpy(&word, p + i, sizeof word);
      if ((word & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    const std::size_t len = SequenceLength(p + i, n - i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string ToValidUtf8(std::string_view text, std::size_t max_bytes) {
  std::string out;
  if (IsValidUtf8(text) && text.size() <= max_bytes) return std::string(text);
  out.reserve(std::min(text.size(), max_bytes));
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t len = SequenceLength(p + i, text.size() - i);
    const std::string_view piece = len == 0 ? kReplacement : text.substr(i, len);
    if (out.size() + piece.size() > max_bytes) break;
    out += piece;
    i += len == 0 ? 1 : len;
  }
  return out;
}

struct JsonWriter::Impl {
  explicit Impl(InvalidUtf8 mode) : invalid_utf8(mode) {}
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer{buffer};
  InvalidUtf8 invalid_utf8;
  int depth = 0;
  // The first refused value: what was wrong, its path as far as codecs named it, and the offset
  // in the text where it was written.
  bool failed = false;
  std::string what;
  std::string path;
  std::size_t offset = 0;

  void Fail(std::string why) {
    if (failed) return;
    failed = true;
    what = std::move(why);
    offset = buffer.GetSize();
  }
  // `text` when valid, else its replaced form (kept in `scratch`) and, when refusing, a failure.
  std::string_view Checked(std::string_view text, std::string& scratch, bool is_key) {
    if (IsValidUtf8(text)) return text;
    if (invalid_utf8 == InvalidUtf8::kRefuse) {
      Fail(is_key ? "has a member name that is not valid UTF-8" : "is not valid UTF-8");
    }
    scratch = ToValidUtf8(text);
    return scratch;
  }
  void Open() {
    if (++depth > kMaxJsonDepth) {
      Fail("nests deeper than " + std::to_string(kMaxJsonDepth) + " levels of objects and arrays");
    }
  }
};

JsonWriter::JsonWriter(InvalidUtf8 invalid_utf8) : impl_(std::make_unique<Impl>(invalid_utf8)) {}
JsonWriter::~JsonWriter() = default;
void JsonWriter::StartObject() {
  impl_->Open();
  impl_->writer.StartObject();
}
void JsonWriter::EndObject() {
  --impl_->depth;
  impl_->writer.EndObject();
}
void JsonWriter::StartArray() {
  impl_->Open();
  impl_->writer.StartArray();
}
void JsonWriter::EndArray() {
  --impl_->depth;
  impl_->writer.EndArray();
}
void JsonWriter::Key(std::string_view key) {
  std::string scratch;
  key = impl_->Checked(key, scratch, true);
  impl_->writer.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()), true);
}
void JsonWriter::String(std::string_view value) {
  std::string scratch;
  value = impl_->Checked(value, scratch, false);
  impl_->writer.String(value.data(), static_cast<rapidjson::SizeType>(value.size()), true);
}
void JsonWriter::Int64(std::int64_t value) { impl_->writer.Int64(value); }
void JsonWriter::Uint64(std::uint64_t value) { impl_->writer.Uint64(value); }
void JsonWriter::Double(double value) { impl_->writer.Double(value); }
void JsonWriter::Bool(bool value) { impl_->writer.Bool(value); }
void JsonWriter::Null() { impl_->writer.Null(); }
void JsonWriter::RawValue(std::string_view json) {
  impl_->writer.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}
std::string_view JsonWriter::View() const {
  return {impl_->buffer.GetString(), impl_->buffer.GetSize()};
}
std::string JsonWriter::Take() {
  std::string out(View());
  impl_->buffer.Clear();
  impl_->writer.Reset(impl_->buffer);
  impl_->depth = 0;
  impl_->failed = false;
  impl_->what.clear();
  impl_->path.clear();
  return out;
}
bool JsonWriter::ok() const { return !impl_->failed; }
Status JsonWriter::status() const {
  if (!impl_->failed) return Ok();
  if (impl_->path.empty()) {
    return Error(ErrorCode::kInvalidArgument,
                 "the value written at byte " + std::to_string(impl_->offset) + " " + impl_->what);
  }
  return Error(ErrorCode::kInvalidArgument, "field '" + impl_->path + "' " + impl_->what);
}
void JsonWriter::PrefixErrorPath(std::string_view segment) {
  if (!impl_->failed) return;
  std::string& path = impl_->path;
  if (path.empty()) {
    path = std::string(segment);
  } else if (path.front() == '[') {
    path = std::string(segment) + path;
  } else {
    path = std::string(segment) + "." + path;
  }
}

std::string_view ToString(JsonType type) {
  switch (type) {
    case JsonType::kNull: return "null";
    case JsonType::kBool: return "a boolean";
    case JsonType::kNumber: return "a number";
    case JsonType::kString: return "a string";
    case JsonType::kArray: return "an array";
    case JsonType::kObject: return "an object";
  }
  return "unknown";
}

JsonType JsonValue::type() const {
  switch (V(v_).GetType()) {
    case rapidjson::kNullType: return JsonType::kNull;
    case rapidjson::kFalseType:
    case rapidjson::kTrueType: return JsonType::kBool;
    case rapidjson::kObjectType: return JsonType::kObject;
    case rapidjson::kArrayType: return JsonType::kArray;
    case rapidjson::kStringType: return JsonType::kString;
    case rapidjson::kNumberType: return JsonType::kNumber;
  }
  return JsonType::kNull;
}
bool JsonValue::IsInt64() const { return V(v_).IsInt64(); }
bool JsonValue::IsUint64() const { return V(v_).IsUint64(); }

namespace {
bool NameIs(const rapidjson::Value& name, std::string_view expected) {
  return name.GetStringLength() == expected.size() &&
         std::string_view(name.GetString(), expected.size()) == expected;
}
}  // namespace

std::optional<JsonValue> JsonValue::Find(std::string_view name) const {
  std::size_t cursor = 0;
  return Find(name, &cursor);
}

std::optional<JsonValue> JsonValue::Find(std::string_view name, std::size_t* cursor) const {
  const auto& v = V(v_);
  if (!v.IsObject()) return std::nullopt;
  const std::size_t count = v.MemberCount();
  // From the cursor to the end, then from the start: no temporary rapidjson::Value for the name.
  for (std::size_t n = 0; n < count; ++n) {
    const std::size_t i = (*cursor + n) % count;
    const auto& member = *(v.MemberBegin() + static_cast<std::ptrdiff_t>(i));
    if (NameIs(member.name, name)) {
      *cursor = i + 1;
      return JsonValue(&member.value);
    }
  }
  return std::nullopt;
}
std::optional<std::string_view> JsonValue::AsString() const {
  const auto& v = V(v_);
  if (!v.IsString()) return std::nullopt;
  return std::string_view(v.GetString(), v.GetStringLength());
}
std::optional<bool> JsonValue::AsBool() const {
  const auto& v = V(v_);
  if (!v.IsBool()) return std::nullopt;
  return v.GetBool();
}
std::optional<std::int64_t> JsonValue::AsInt64() const {
  const auto& v = V(v_);
  if (!v.IsInt64()) return std::nullopt;
  return v.GetInt64();
}
std::optional<std::uint64_t> JsonValue::AsUint64() const {
  const auto& v = V(v_);
  if (!v.IsUint64()) return std::nullopt;
  return v.GetUint64();
}
std::optional<double> JsonValue::AsDouble() const {
  const auto& v = V(v_);
  if (!v.IsNumber()) return std::nullopt;
  return v.GetDouble();
}
std::string_view JsonValue::GetString() const {
  return {V(v_).GetString(), V(v_).GetStringLength()};
}
bool JsonValue::GetBool() const { return V(v_).GetBool(); }
std::int64_t JsonValue::GetInt64() const { return V(v_).GetInt64(); }
std::uint64_t JsonValue::GetUint64() const { return V(v_).GetUint64(); }
double JsonValue::GetDouble() const { return V(v_).GetDouble(); }
std::size_t JsonValue::Size() const {
  const auto& v = V(v_);
  if (v.IsArray()) return v.Size();
  if (v.IsObject()) return v.MemberCount();
  return 0;
}
JsonValue JsonValue::At(std::size_t i) const {
  return JsonValue(&V(v_)[static_cast<rapidjson::SizeType>(i)]);
}
std::string_view JsonValue::MemberName(std::size_t i) const {
  const auto& name = (V(v_).MemberBegin() + static_cast<std::ptrdiff_t>(i))->name;
  return {name.GetString(), name.GetStringLength()};
}
JsonValue JsonValue::MemberValue(std::size_t i) const {
  return JsonValue(&(V(v_).MemberBegin() + static_cast<std::ptrdiff_t>(i))->value);
}
std::string JsonValue::ToJson() const {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  V(v_).Accept(writer);
  return {buffer.GetString(), buffer.GetSize()};
}

struct JsonDocument::Impl {
  rapidjson::Document doc;
};

JsonDocument::JsonDocument() : impl_(std::make_unique<Impl>()) {}
JsonDocument::~JsonDocument() = default;
JsonDocument::JsonDocument(JsonDocument&&) noexcept = default;
JsonDocument& JsonDocument::operator=(JsonDocument&&) noexcept = default;

namespace {

// What a CheckingHandler refused.
enum class Refusal { kNone, kInvalidUtf8, kTooDeep };

// Passes SAX events on to `Inner` and refuses strings and member names that are not valid
// UTF-8 and nesting past kMaxJsonDepth. Refusing StartObject/StartArray stops the recursive
// parser before it recurses deeper, so its stack use is bounded too.
template <class Inner>
class CheckingHandler {
 public:
  // `depth`: the levels the text is nested inside (a raw value written into a writer).
  explicit CheckingHandler(Inner& inner, int depth = 0) : inner_(inner), depth_(depth) {}

  bool Null() { return inner_.Null(); }
  bool Bool(bool b) { return inner_.Bool(b); }
  bool Int(int i) { return inner_.Int(i); }
  bool Uint(unsigned u) { return inner_.Uint(u); }
  bool Int64(std::int64_t i) { return inner_.Int64(i); }
  bool Uint64(std::uint64_t u) { return inner_.Uint64(u); }
  bool Double(double d) { return inner_.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    return inner_.RawNumber(s, n, copy);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) {
    if (!IsValidUtf8({s, n})) return Refuse(Refusal::kInvalidUtf8);
    return inner_.String(s, n, copy);
  }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) {
    if (!IsValidUtf8({s, n})) return Refuse(Refusal::kInvalidUtf8);
    return inner_.Key(s, n, copy);
  }
  bool StartObject() { return Open() && inner_.StartObject(); }
  bool EndObject(rapidjson::SizeType n) {
    --depth_;
    return inner_.EndObject(n);
  }
  bool StartArray() { return Open() && inner_.StartArray(); }
  bool EndArray(rapidjson::SizeType n) {
    --depth_;
    return inner_.EndArray(n);
  }

  Refusal refusal() const { return refusal_; }

 private:
  bool Open() { return ++depth_ <= kMaxJsonDepth || Refuse(Refusal::kTooDeep); }
  bool Refuse(Refusal r) {
    refusal_ = r;
    return false;
  }

  Inner& inner_;
  int depth_ = 0;
  Refusal refusal_ = Refusal::kNone;
};

// Where a parse stopped on a string that is not valid UTF-8: replays the events of the same text
// and keeps the path of the value being read ("args[2]", "params.codec"). Only run on the error
// path, so the good path copies no member names.
class PathTracker : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, PathTracker> {
 public:
  bool Default() {
    Completed();
    return true;
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (!IsValidUtf8({s, n})) return false;
    Completed();
    return true;
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (!IsValidUtf8({s, n})) return false;
    frames_.back().key = std::string(s, n);
    return true;
  }
  bool StartObject() { return Open(false); }
  bool StartArray() { return Open(true); }
  bool EndObject(rapidjson::SizeType) { return Close(); }
  bool EndArray(rapidjson::SizeType) { return Close(); }

  // "field 'a.b[2]' is not valid UTF-8", "a member name in field 'env' ...", or for the root.
  std::string Describe() const {
    std::string path;
    bool in_name = false;
    for (const Frame& f : frames_) {
      if (f.array) {
        path += "[" + std::to_string(f.index) + "]";
      } else if (f.key) {
        if (!path.empty()) path += '.';
        path += *f.key;
      } else {
        in_name = true;  // between members: the refused string is a member name
        break;
      }
    }
    if (in_name) {
      return path.empty() ? "a member name of the payload is not valid UTF-8"
                          : "a member name in field '" + path + "' is not valid UTF-8";
    }
    return path.empty() ? "payload: the string is not valid UTF-8"
                        : "field '" + path + "' is not valid UTF-8";
  }

 private:
  struct Frame {
    bool array = false;
    std::size_t index = 0;           // arrays: the element being read
    std::optional<std::string> key;  // objects: the member being read, none between members
  };
  bool Open(bool array) {
    if (frames_.size() >= static_cast<std::size_t>(kMaxJsonDepth)) return false;
    frames_.push_back(Frame{.array = array});
    return true;
  }
  bool Close() {
    frames_.pop_back();
    Completed();
    return true;
  }
  void Completed() {
    if (frames_.empty()) return;
    Frame& f = frames_.back();
    if (f.array) {
      ++f.index;
    } else {
      f.key.reset();
    }
  }
  std::vector<Frame> frames_;
};

// Runs the reader over `text` with `handler`; the reader's stack starts in a buffer here and
// spills to heap chunks for long strings.
template <class Handler>
rapidjson::ParseResult Read(std::string_view text, Handler& handler) {
  alignas(std::max_align_t) char buffer[1024];
  rapidjson::MemoryPoolAllocator<> allocator(buffer, sizeof buffer);
  rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>, rapidjson::MemoryPoolAllocator<>>
      reader(&allocator, sizeof buffer / 4);
  rapidjson::MemoryStream ms(text.data(), text.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> is(ms);
  return reader.Parse(is, handler);
}

Status ParseError(std::string_view text, const rapidjson::ParseResult& result, Refusal refusal) {
  const std::string at = std::to_string(result.Offset());
  if (refusal == Refusal::kTooDeep) {
    return Error(ErrorCode::kDecode, "payload nests deeper than " + std::to_string(kMaxJsonDepth) +
                                         " levels of objects and arrays (at byte " + at +
                                         "): kbus reads at most " + std::to_string(kMaxJsonDepth));
  }
  // A \u escape that leaves half a surrogate pair is invalid UTF-8 by another name.
  if (refusal == Refusal::kInvalidUtf8 ||
      result.Code() == rapidjson::kParseErrorStringUnicodeSurrogateInvalid) {
    PathTracker tracker;
    Read(text, tracker);
    return Error(ErrorCode::kDecode, tracker.Describe() + " (near byte " + at +
                                         "): JSON text must be UTF-8 without lone surrogates");
  }
  return Error(ErrorCode::kDecode, "malformed JSON at byte " + at + ": " +
                                       rapidjson::GetParseError_En(result.Code()));
}

template <class Doc>
Status ParseInto(Doc& doc, std::string_view text) {
  if (text.empty()) return Error(ErrorCode::kDecode, "empty payload: expected a JSON document");
  // The recursive parser, faster than the iterative one: the depth check bounds its recursion.
  CheckingHandler<Doc> checking(doc);
  rapidjson::ParseResult result;
  auto generate = [&](Doc&) {
    result = Read(text, checking);
    return !result.IsError();
  };
  doc.Populate(generate);
  if (result.IsError()) return ParseError(text, result, checking.refusal());
  return Ok();
}

}  // namespace

// Shared with the dispatcher, which keeps its document on the stack.
Status ParseJson(rapidjson::Document& doc, std::string_view text) { return ParseInto(doc, text); }
Status ParseJson(detail::PooledDocument& doc, std::string_view text) { return ParseInto(doc, text); }

Status JsonDocument::Parse(std::string_view text) { return ParseJson(impl_->doc, text); }
JsonValue JsonDocument::Root() const { return JsonValue(&impl_->doc); }

Status ValidateJson(std::string_view text) {
  if (text.empty()) return Error(ErrorCode::kDecode, "empty payload: expected a JSON document");
  rapidjson::BaseReaderHandler<> ignore;
  CheckingHandler<rapidjson::BaseReaderHandler<>> checking(ignore);
  const rapidjson::ParseResult result = Read(text, checking);
  if (result.IsError()) return ParseError(text, result, checking.refusal());
  return Ok();
}

void JsonWriter::CheckedRawValue(std::string_view json) {
  std::string why;
  if (json.empty()) {
    why = "is not JSON: the text is empty";
  } else {
    rapidjson::BaseReaderHandler<> ignore;
    CheckingHandler<rapidjson::BaseReaderHandler<>> checking(ignore, impl_->depth);
    const rapidjson::ParseResult result = Read(json, checking);
    if (result.IsError()) {
      // The same words as the writer's own refusals, so a path names them all alike.
      if (checking.refusal() == Refusal::kTooDeep) {
        why = "nests deeper than " + std::to_string(kMaxJsonDepth) + " levels of objects and arrays";
      } else if (checking.refusal() == Refusal::kInvalidUtf8 ||
                 result.Code() == rapidjson::kParseErrorStringUnicodeSurrogateInvalid) {
        why = "is not valid UTF-8";
      } else {
        why = "is not valid JSON (at byte " + std::to_string(result.Offset()) +
              "): " + rapidjson::GetParseError_En(result.Code());
      }
    }
  }
  if (!why.empty()) {
    impl_->Fail(std::move(why));
    impl_->writer.Null();
    return;
  }
  impl_->writer.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

namespace detail {

void DecodeFailure::Prefix(std::string_view segment) {
  if (path.empty()) {
    path = std::string(segment);
  } else if (path.front() == '[') {
    path = std::string(segment) + path;
  } else {
    path = std::string(segment) + "." + path;
  }
}

std::string MistypeMessage(std::string_view expected, const JsonValue& got) {
  std::string out = "expected ";
  out += expected;
  out += ", got ";
  out += ToString(got.type());
  return out;
}

std::string OutOfRangeMessage(const JsonValue& got, std::string_view type_name) {
  return got.ToJson() + " is out of range for " + std::string(type_name);
}

Error ToError(const DecodeFailure& failure) {
  if (failure.path.empty()) return Error(ErrorCode::kDecode, "payload: " + failure.what);
  std::string msg = "field '" + failure.path + "' ";
  if (failure.what != "is missing") msg += "has the wrong type or value: ";
  msg += failure.what;
  return Error(ErrorCode::kDecode, std::move(msg));
}

}  // namespace detail
}  // namespace kbus
