#pragma once
// Parsing entry points shared by json.cpp and dispatcher.cpp (private: RapidJSON types).

#include <rapidjson/document.h>

#include <string_view>

#include "kbus/json.hpp"
#include "kbus/result.hpp"

namespace kbus {
namespace detail {
// A document whose nodes and parse stack live in caller-provided buffers (the dispatcher's stack
// frame); bigger payloads spill into heap chunks.
using PooledDocument = rapidjson::GenericDocument<rapidjson::UTF8<>, rapidjson::MemoryPoolAllocator<>,
                                                  rapidjson::MemoryPoolAllocator<>>;

// Makes JsonValue views, whose constructor is not public API, for parsing code outside json.cpp.
struct JsonValueAccess {
  static JsonValue View(const rapidjson::Value& value) { return JsonValue(&value); }
};
}  // namespace detail

// Parse errors name the byte offset; an empty text is an error of its own. kbus's rules hold
// (json.hpp): strings valid UTF-8 (an error names the field), at most kMaxJsonDepth levels.
Status ParseJson(rapidjson::Document& doc, std::string_view text);
Status ParseJson(detail::PooledDocument& doc, std::string_view text);
}  // namespace kbus
