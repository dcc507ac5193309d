#include "kbus/json.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <string>

#include "json_parse.hpp"
#include "kbus/codec.hpp"

namespace kbus {

namespace {
const rapidjson::Value& V(const void* p) { return *static_cast<const rapidjson::Value*>(p); }
}  // namespace

struct JsonWriter::Impl {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer{buffer};
};

JsonWriter::JsonWriter() : impl_(std::make_unique<Impl>()) {}
JsonWriter::~JsonWriter() = default;
void JsonWriter::StartObject() { impl_->writer.StartObject(); }
void JsonWriter::EndObject() { impl_->writer.EndObject(); }
void JsonWriter::StartArray() { impl_->writer.StartArray(); }
void JsonWriter::EndArray() { impl_->writer.EndArray(); }
void JsonWriter::Key(std::string_view key) {
  impl_->writer.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()), true);
}
void JsonWriter::String(std::string_view value) {
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
  return out;
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
template <class Doc>
Status ParseInto(Doc& doc, std::string_view text) {
  if (text.empty()) return Error(ErrorCode::kDecode, "empty payload: expected a JSON document");
  // A payload nested a million levels deep must not overflow the stack, so large payloads take
  // the iterative parser. The recursive one is faster, and nesting depth is bounded by the size:
  // 2 KiB of text nests at most ~2000 levels, ~85 bytes of stack each, about 170 KiB.
  if (text.size() <= 2048) {
    doc.Parse(text.data(), text.size());
  } else {
    doc.template Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  }
  if (doc.HasParseError()) {
    return Error(ErrorCode::kDecode, std::string("malformed JSON at byte ") +
                                         std::to_string(doc.GetErrorOffset()) + ": " +
                                         rapidjson::GetParseError_En(doc.GetParseError()));
  }
  return Ok();
}
}  // namespace

// Shared with the dispatcher, which keeps its document on the stack.
Status ParseJson(rapidjson::Document& doc, std::string_view text) { return ParseInto(doc, text); }
Status ParseJson(detail::PooledDocument& doc, std::string_view text) { return ParseInto(doc, text); }

Status JsonDocument::Parse(std::string_view text) { return ParseJson(impl_->doc, text); }
JsonValue JsonDocument::Root() const { return JsonValue(&impl_->doc); }

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
