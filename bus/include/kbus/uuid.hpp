#pragma once
// UUIDs for message ids, as lower-case 8-4-4-4-12 text.

#include <string>
#include <string_view>

namespace kbus {

// A random (version 4) UUID. Thread-safe.
std::string NewUuid();

// A name-based (version 5, SHA-1) UUID in kbus's namespace: the same name gives the same id.
std::string NameUuid(std::string_view name);

}  // namespace kbus
