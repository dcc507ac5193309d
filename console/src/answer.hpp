#pragma once
// What an API call answers: an HTTP status and a JSON body. The indexes answer with these, so
// they can be tested without a server.

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/json.hpp"
#include "kbus/result.hpp"

namespace kbus::console {

struct Answer {
  int status = 200;
  std::string json;
};

// {"error": message} with 404, 400 (naming `parameter`), 401, 403 or 503.
Answer ErrorAnswer(int status, std::string_view message, std::string_view parameter = {});

// The query parameters of a request, as decoded strings.
using Params = std::map<std::string, std::string, std::less<>>;

// offset (>= 0, default 0) and limit (1..kMaxLimit, default 50).
struct Page {
  static constexpr std::size_t kMaxLimit = 500;
  std::size_t offset = 0;
  std::size_t limit = 50;
};
// The page asked for, or a 400 answer naming the parameter.
Result<Page> ParsePage(const Params& params, Answer* bad);

// An integer parameter: nullopt when absent; a 400 in *bad when present and not an integer in
// [min, max].
std::optional<std::int64_t> IntParam(const Params& params, std::string_view name, std::int64_t min,
                                     std::int64_t max, Answer* bad);
// A parameter that must be present and not empty; "" and a 400 in *bad otherwise.
std::string RequiredParam(const Params& params, std::string_view name, Answer* bad);
std::string OptionalParam(const Params& params, std::string_view name);

// The list envelope: {"items":[...],"total":N,"offset":o,"limit":l}. `items` is a JSON array.
std::string PageJson(std::string_view items, std::size_t total, const Page& page);

// A member of a parsed record: its integer or string value, else the fallback.
std::int64_t IntMember(const JsonValue& object, std::string_view name, std::int64_t fallback = 0);
std::string_view StrMember(const JsonValue& object, std::string_view name);

// The value, or null.
void WriteIntOrNull(JsonWriter& w, std::optional<std::int64_t> value);

// Writes `json` as a value when it parses as JSON, else as a string: state and results are
// JSON, but the console never passes on text it has not checked.
void WriteJsonOrString(JsonWriter& w, std::string_view json);

}  // namespace kbus::console
