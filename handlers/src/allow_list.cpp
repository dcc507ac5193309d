#include "kbus/handlers/process.hpp"

// The allow-list: its text format (process.hpp) and how a program name resolves to a spec.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace kbus::handlers {

namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::vector<std::string> Words(std::string_view s) {
  std::vector<std::string> out;
  while (true) {
    s = Trim(s);
    if (s.empty()) return out;
    std::size_t n = 0;
    while (n < s.size() && !IsSpace(s[n])) ++n;
    out.emplace_back(s.substr(0, n));
    s.remove_prefix(n);
  }
}

constexpr std::string_view kProgramKeys[] = {"progress", "env",  "image",     "cpus",  "memory", "pids",
                                             "network",  "user", "read_only", "mount", "tmpfs"};

bool IsProgramKey(std::string_view key) {
  return std::find(std::begin(kProgramKeys), std::end(kProgramKeys), key) != std::end(kProgramKeys);
}

// A size in bytes: digits with an optional k, m or g (powers of 1024); nullopt when not one.
std::optional<std::int64_t> ParseSize(std::string_view text) {
  std::int64_t unit = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'k': case 'K': unit = std::int64_t{1} << 10; break;
      case 'm': case 'M': unit = std::int64_t{1} << 20; break;
      case 'g': case 'G': unit = std::int64_t{1} << 30; break;
      default: break;
    }
    if (unit != 1) text.remove_suffix(1);
  }
  if (text.empty() || text.size() > 12 || text.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  return std::stoll(std::string(text)) * unit;
}

bool IsPlainWord(std::string_view w) {
  return !w.empty() && std::none_of(w.begin(), w.end(), [](char c) { return static_cast<unsigned char>(c) < 0x21 || c == 0x7f; });
}

// Sets `key` of `p` from the words after '='; "" when fine, else what is wrong.
std::string SetProgramKey(AllowList::Program& p, const std::string& key, const std::vector<std::string>& words) {
  if (key == "env") {
    for (const auto& w : words) {
      if (w.find('=') != std::string::npos) return "names '" + w + "', which is not a variable name";
      p.allowed_env.push_back(w);
    }
    return {};
  }
  if (key == "progress") {
    const auto format = words.size() == 1 ? ProgressFormatNamed(words.front()) : std::nullopt;
    if (!format) return "must be one of kbus, ffmpeg";
    p.progress = *format;
    return {};
  }
  if (words.size() != 1) return "takes one value";
  const std::string& w = words.front();
  ContainerSpec& c = p.container;
  if (key == "image") {
    if (!IsPlainWord(w)) return "is not an image name";
    c.image = w;
  } else if (key == "cpus") {
    char* end = nullptr;
    const double v = std::strtod(w.c_str(), &end);
    if (end != w.c_str() + w.size() || !(v > 0) || v > 1024) return "must be a number of CPUs above 0, at most 1024";
    c.cpus = v;
  } else if (key == "memory") {
    const auto v = ParseSize(w);
    if (!v || *v < (std::int64_t{6} << 20)) return "must be a size of at least 6m (digits with k, m or g)";
    c.memory_bytes = *v;
  } else if (key == "pids") {
    const auto v = ParseSize(w);
    if (!v || *v < 1 || w.find_first_not_of("0123456789") != std::string::npos) return "must be a whole number, at least 1";
    c.pids = *v;
  } else if (key == "network") {
    if (!IsPlainWord(w)) return "is not a network name";
    c.network = w;
  } else if (key == "user") {
    if (!IsPlainWord(w)) return "is not a user";
    const std::string who = w.substr(0, w.find(':'));
    if (who == "0" || who == "root") return "must not be root: jobs run as a user without privileges";
    c.user = w;
  } else if (key == "read_only") {
    if (w != "true" && w != "false") return "must be true or false";
    c.read_only = w == "true";
  } else if (key == "mount") {
    // SOURCE:TARGET[:ro|rw]; the target and a path source absolute.
    std::vector<std::string> parts;
    for (std::size_t from = 0;;) {
      const auto colon = w.find(':', from);
      parts.push_back(w.substr(from, colon - from));
      if (colon == std::string::npos) break;
      from = colon + 1;
    }
    if (parts.size() == 2) parts.push_back("ro");
    if (parts.size() != 3 || parts[0].empty() || parts[1].empty() || parts[1].front() != '/' ||
        (parts[2] != "ro" && parts[2] != "rw") || !IsPlainWord(w)) {
      return "must be SOURCE:TARGET[:ro|rw], the target an absolute path, the source a host path or a volume";
    }
    c.mounts.push_back(parts[0] + ":" + parts[1] + ":" + parts[2]);
  } else if (key == "tmpfs") {
    if (!IsPlainWord(w) || w.front() != '/' || w.find(':') != std::string::npos) return "must be an absolute path";
    c.tmpfs.push_back(w);
  }
  return {};
}

}  // namespace

Result<AllowList> AllowList::Parse(std::string_view text) {
  AllowList list;
  std::set<std::string> set_keys;  // "name.key" lines read, for keys that may be given once
  std::size_t number = 0;
  auto bad = [&](const std::string& what) {
    return Error(ErrorCode::kInvalidArgument, "allow-list line " + std::to_string(number) + ": " + what);
  };
  while (!text.empty()) {
    ++number;
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = Trim(line);
    if (line.empty()) continue;
    const auto eq = line.find('=');
    if (eq == std::string_view::npos) return bad("expected 'name = /absolute/path [args...]'");
    std::string name(Trim(line.substr(0, eq)));
    const std::vector<std::string> words = Words(line.substr(eq + 1));
    if (const auto dot = name.rfind('.'); dot != std::string::npos && IsProgramKey(std::string_view(name).substr(dot + 1))) {
      const std::string key = name.substr(dot + 1);
      const std::string line_name = name;
      name.resize(dot);
      auto it = list.programs_.find(name);
      if (it == list.programs_.end()) return bad("'" + line_name + "' before the program '" + name + "'");
      const bool repeatable = key == "env" || key == "mount" || key == "tmpfs";
      if (!repeatable && !set_keys.insert(line_name).second) return bad("'" + line_name + "' is given twice");
      if (std::string why = SetProgramKey(it->second, key, words); !why.empty()) return bad("'" + line_name + "' " + why);
      continue;
    }
    if (name.empty() || name.find_first_of(" \t/") != std::string::npos) return bad("'" + name + "' is not a program name");
    if (words.empty() || words.front().front() != '/') return bad("program '" + name + "' needs an absolute path");
    if (list.programs_.contains(name)) return bad("program '" + name + "' is listed twice");
    Program p;
    p.path = words.front();
    p.fixed_args.assign(words.begin() + 1, words.end());
    list.programs_.emplace(std::move(name), std::move(p));
  }
  return list;
}

Result<ProcessSpec> AllowList::Resolve(std::string_view name, const std::vector<std::string>& args,
                                       const std::map<std::string, std::string>& env) const {
  auto it = programs_.find(name);
  if (it == programs_.end()) {
    return Error(ErrorCode::kInvalidArgument,
                 "program '" + std::string(name) + "' is not in the launcher's allow-list");
  }
  const Program& p = it->second;
  for (const auto& [k, v] : env) {
    if (std::find(p.allowed_env.begin(), p.allowed_env.end(), k) == p.allowed_env.end()) {
      return Error(ErrorCode::kInvalidArgument, "environment variable '" + k + "' is not allowed for program '" +
                                                    std::string(name) + "'");
    }
  }
  ProcessSpec spec;
  spec.path = p.path;
  spec.argv0 = std::string(name);
  spec.args = p.fixed_args;
  spec.args.insert(spec.args.end(), args.begin(), args.end());
  spec.env = env;
  spec.progress = p.progress;
  spec.container = p.container;
  return spec;
}

}  // namespace kbus::handlers
