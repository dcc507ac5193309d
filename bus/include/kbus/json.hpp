#pragma once
// JsonWriter and JsonValue: the two views of JSON a message codec sees. They wrap RapidJSON
// without exposing it, so public headers stay free of it.
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

// Streams JSON text into an internal buffer.
class JsonWriter {
 public:
  JsonWriter();
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

  // The text written so far. Valid until the next call on this writer.
  std::string_view View() const;
  std::string Take();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

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

  // Serialises this value back to compact JSON text.
  std::string ToJson() const;

  // For kbus's own parsing code: wraps a pointer to a rapidjson::Value.
  explicit JsonValue(const void* value) : v_(value) {}

 private:
  const void* v_;
};

// An owned parsed document. Parse errors name the byte offset and what RapidJSON reported.
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
