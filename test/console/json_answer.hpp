#pragma once
// A console answer's JSON, parsed, with short accessors for the tests' checks.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kbus/json.hpp"

namespace console_test {

struct Json {
  Json(int status_code, const std::string& text) : status(status_code), body(text) {
    EXPECT_TRUE(doc.Parse(text).ok()) << "not JSON (" << status_code << "): " << text;
  }
  kbus::JsonValue root() const { return doc.Root(); }
  std::string Str(std::string_view name) const {
    auto v = root().Find(name);
    return v && v->AsString() ? std::string(*v->AsString()) : std::string("<absent>");
  }
  std::int64_t Int(std::string_view name) const {
    auto v = root().Find(name);
    return v && v->AsInt64() ? *v->AsInt64() : -999;
  }
  kbus::JsonValue Items() const { return *root().Find("items"); }
  // The `field` of every item, as strings.
  std::vector<std::string> Ids(std::string_view field = "id") const {
    std::vector<std::string> out;
    auto items = Items();
    for (std::size_t i = 0; i < items.Size(); ++i) {
      auto v = items.At(i).Find(field);
      out.emplace_back(v && v->AsString() ? *v->AsString() : "<absent>");
    }
    return out;
  }
  int status;
  std::string body;
  kbus::JsonDocument doc;
};

}  // namespace console_test
