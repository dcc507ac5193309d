#pragma once
// JsonWriter and JsonValue: the two views of JSON a message codec sees. They wrap RapidJSON
// without exposing it, so public headers stay free of it.
//
// Two rules hold for all JSON kbus reads or writes (docs/delivery.md, "The wire format"):
// strings and member names are valid UTF-8, and objects and arrays nest at most kMaxJsonDepth
// levels deep. Parsing refuses anything else as a decode error; JsonWriter reports it (ok()).
// The depth bound is what keeps every reader and writer of a DOM, recursive or not, off the end
// of its stack whatever a record holds.
//
// Thread safety: a JsonWriter is used by one thread at a time; a JsonValue is a read-only view
// into a document owned elsewhere and is valid as long as that document.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/result.hpp"

namespace kbus {

// How deep objects and arrays may nest, the outermost counting as level 1.
inline constexpr int kMaxJsonDepth = 128;

// True when `text` is well-formed UTF-8 (RFC 3629): no stray or missing continuation bytes, no
// overlong forms, no UTF-16 surrogates (U+D800..U+DFFF), nothing past U+10FFFF.
bool IsValidUtf8(std::string_view text);

// `text` made valid UTF-8 and at most `max_bytes` long: each byte that starts no valid sequence
// becomes U+FFFD, and a cut falls between characters. For diagnostic text taken from input
// (error messages, logs), never for data.
std::string ToValidUtf8(std::string_view text, std::size_t max_bytes = std::string_view::npos);

// Checks that `text` is one JSON value within kbus's rules, without building a document: the
// same errors as JsonDocument::Parse.
Status ValidateJson(std::string_view text);

// What JsonWriter does with a string or member name that is not valid UTF-8.
enum class InvalidUtf8 {
  kRefuse,   // write it with U+FFFD in place of each bad byte, and fail (ok() turns false)
  kReplace,  // write it with U+FFFD in place of each bad byte: output meant for people
};

// Streams JSON text into an internal buffer.
//
// Errors: a string or member name that is not valid UTF-8 (with InvalidUtf8::kRefuse) or a
// StartObject/StartArray past kMaxJsonDepth makes ok() false. The writer still writes every call
// (a refused string in its replaced form), so the calls' structure stays whole, but the text
// must not be sent: status() says what and where.
class JsonWriter {
 public:
  explicit JsonWriter(InvalidUtf8 invalid_utf8 = InvalidUtf8::kRefuse);
  ~JsonWriter();
  JsonWriter(const JsonWriter&) = delete;
  JsonWriter& operator=(const JsonWriter&) = delete;

  void StartObject();
  void EndObject();
  void StartArray();
  void EndArray();
  void Key(std::string_view key);
  void String(std::string_view value);
  void Int64(std::int64_t value);
  void Uint64(std::uint64_t value);
  void Double(double value);
  void Bool(bool value);
  void Null();
  // Writes `json` verbatim as one value, unchecked: the caller vouches that it is exactly one
  // valid JSON value, and compact if the output must stay on one line.
  void RawValue(std::string_view json);
  // Writes `json` verbatim as one value after checking it as JsonDocument::Parse would, with
  // the levels it is written inside counted towards kMaxJsonDepth. Text that is not exactly one
  // such value is refused like a bad string: ok() turns false, naming what was wrong, and null
  // is written in its place so the calls' structure stays whole. Whitespace is kept as given.
  void CheckedRawValue(std::string_view json);

  // The text written so far. Valid until the next call on this writer.
  std::string_view View() const;
  // The text written so far; the writer starts over, ok() again.
  std::string Take();

  // False once something was written that kbus does not put on the wire (see above).
  bool ok() const;
  // Ok, or kInvalidArgument naming the first refused value: "field 'args[2]' is not valid UTF-8"
  // when the codec named its path (PrefixErrorPath), else where it was in the text.
  Status status() const;
  // For codecs, while !ok(): puts `segment` ("name" or "[i]") in front of the refused value's
  // path, innermost first, as the failure travels out of nested values.
  void PrefixErrorPath(std::string_view segment);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class JsonDocument;
namespace detail {
struct JsonValueAccess;  // bus/src/json_parse.hpp
}  // namespace detail

enum class JsonType { kNull, kBool, kNumber, kString, kArray, kObject };
std::string_view ToString(JsonType type);

// A read-only view of one value inside a parsed document.
class JsonValue {
 public:
  JsonType type() const;
  bool IsNull() const { return type() == JsonType::kNull; }
  bool IsObject() const { return type() == JsonType::kObject; }
  bool IsArray() const { return type() == JsonType::kArray; }
  bool IsString() const { return type() == JsonType::kString; }
  bool IsBool() const { return type() == JsonType::kBool; }
  bool IsNumber() const { return type() == JsonType::kNumber; }
  bool IsInt64() const;   // an integer that fits in int64
  bool IsUint64() const;  // a non-negative integer that fits in uint64

  // Object member lookup; nullopt when this is not an object or has no such member.
  std::optional<JsonValue> Find(std::string_view name) const;
  // The same, trying position `*cursor` first and leaving `*cursor` just after the member found.
  // Decoders walk their fields with one cursor, so a document written in field order (as kbus
  // writes them) costs one comparison per field instead of a scan.
  std::optional<JsonValue> Find(std::string_view name, std::size_t* cursor) const;

  // The value when it has that type, else nullopt: one call where Is*() + Get*() take two, for
  // decoders on the hot path. AsInt64/AsUint64 need an integer that fits; AsDouble any number.
  std::optional<std::string_view> AsString() const;
  std::optional<bool> AsBool() const;
  std::optional<std::int64_t> AsInt64() const;
  std::optional<std::uint64_t> AsUint64() const;
  std::optional<double> AsDouble() const;

  // Preconditions: the matching Is*() holds.
  std::string_view GetString() const;
  bool GetBool() const;
  std::int64_t GetInt64() const;
  std::uint64_t GetUint64() const;
  double GetDouble() const;

  // Arrays: Size() elements, At(i) for i < Size().
  std::size_t Size() const;
  JsonValue At(std::size_t i) const;

  // Objects: Size() members, MemberName(i) and MemberValue(i) for i < Size().
  std::string_view MemberName(std::size_t i) const;
  JsonValue MemberValue(std::size_t i) const;

  // Serialises this value back to compact JSON text. A parsed document is within kbus's rules,
  // so this is valid JSON and its recursion is bounded by kMaxJsonDepth.
  std::string ToJson() const;


 private:
  // Only kbus's own parsing code makes views: JsonDocument::Root(), this class's accessors, and
  // the dispatcher's pooled document (through detail::JsonValueAccess, in bus/src).
  friend class JsonDocument;
  friend struct detail::JsonValueAccess;
  explicit JsonValue(const void* value) : v_(value) {}  // a const rapidjson::Value*

  const void* v_;
};

// An owned parsed document. Parse errors (kDecode) name the byte offset and what was wrong; a
// string that is not valid UTF-8 (raw bytes, or a \u escape of a lone UTF-16 surrogate) names its
// field ("field 'args[2]' is not valid UTF-8"), nesting past kMaxJsonDepth says so.
class JsonDocument {
 public:
  JsonDocument();
  ~JsonDocument();
  JsonDocument(JsonDocument&&) noexcept;
  JsonDocument& operator=(JsonDocument&&) noexcept;

  // Parses `text`, replacing any previous content. The text need not outlive the document.
  Status Parse(std::string_view text);
  JsonValue Root() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kbus
