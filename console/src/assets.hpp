#pragma once
// The web page's files, built into the program (console/web, embedded by console/embed.cmake).

#include <optional>
#include <string>
#include <string_view>

namespace kbus::console {

struct Asset {
  std::string_view content;
  std::string_view content_type;
};

// "/index.html", "/app.js", "/style.css"; nullopt for anything else.
std::optional<Asset> FindAsset(std::string_view path);

}  // namespace kbus::console
