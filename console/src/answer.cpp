#include "answer.hpp"

#include <charconv>

namespace kbus::console {

Answer ErrorAnswer(int status, std::string_view message, std::string_view parameter) {
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartObject();
  w.Key("error");
  w.String(message);
  if (!parameter.empty()) {
    w.Key("parameter");
    w.String(parameter);
  }
  w.EndObject();
  return {status, w.Take()};
}

std::optional<std::int64_t> IntParam(const Params& params, std::string_view name, std::int64_t min,
                                     std::int64_t max, Answer* bad) {
  auto it = params.find(name);
  if (it == params.end()) return std::nullopt;
  const std::string& text = it->second;
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    *bad = ErrorAnswer(400,
                       std::string(name) + " must be an integer from " + std::to_string(min) + " to " +
                           std::to_string(max) + ", not '" + ToValidUtf8(text, 64) + "'",
                       name);
    return std::nullopt;
  }
  return value;
}

Result<Page> ParsePage(const Params& params, Answer* bad) {
  Page page;
  bad->status = 200;
  if (auto offset = IntParam(params, "offset", 0, std::int64_t{1} << 40, bad)) page.offset = *offset;
  if (bad->status != 200) return Error(ErrorCode::kInvalidArgument, "offset");
  if (auto limit = IntParam(params, "limit", 1, Page::kMaxLimit, bad)) page.limit = *limit;
  if (bad->status != 200) return Error(ErrorCode::kInvalidArgument, "limit");
  return page;
}

std::string RequiredParam(const Params& params, std::string_view name, Answer* bad) {
  auto it = params.find(name);
  if (it == params.end() || it->second.empty()) {
    *bad = ErrorAnswer(400, "the parameter " + std::string(name) + " is required", name);
    return {};
  }
  return it->second;
}

std::string OptionalParam(const Params& params, std::string_view name) {
  auto it = params.find(name);
  return it == params.end() ? std::string() : it->second;
}

std::string PageJson(std::string_view items, std::size_t total, const Page& page) {
  std::string out;
  out.reserve(items.size() + 64);
  out += "{\"items\":";
  out += items;
  out += ",\"total\":" + std::to_string(total) + ",\"offset\":" + std::to_string(page.offset) +
         ",\"limit\":" + std::to_string(page.limit) + "}";
  return out;
}

std::int64_t IntMember(const JsonValue& object, std::string_view name, std::int64_t fallback) {
  auto v = object.Find(name);
  if (!v) return fallback;
  return v->AsInt64().value_or(fallback);
}

std::string_view StrMember(const JsonValue& object, std::string_view name) {
  auto v = object.Find(name);
  if (!v) return {};
  return v->AsString().value_or(std::string_view());
}

void WriteIntOrNull(JsonWriter& w, std::optional<std::int64_t> value) {
  if (value) {
    w.Int64(*value);
  } else {
    w.Null();
  }
}

void WriteJsonOrString(JsonWriter& w, std::string_view json) {
  // RawValue wants one valid, compact value; a parsed document re-serialised is one.
  JsonDocument doc;
  if (doc.Parse(json).ok()) {
    w.RawValue(doc.Root().ToJson());
    return;
  }
  w.String(json);
}

}  // namespace kbus::console
