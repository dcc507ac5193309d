#pragma once
// Whether processes still run, read from /proc, for the launcher's tests.

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace kbus::test {

// True while a process matching `match(pid, pgrp)` still runs (zombies, dead and waiting to be
// reaped, do not count), waiting up to `patience` for a SIGKILL to land.
template <class Match>
bool AnyAlive(Match match, std::chrono::milliseconds patience = std::chrono::seconds(1)) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    bool alive = false;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      std::ifstream stat(entry.path() / "stat");
      std::string text;
      if (!std::getline(stat, text)) continue;
      // pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
      const auto close = text.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(text.substr(close + 1));
      char state = 0;
      int ppid = 0, pgrp = 0;
      if (rest >> state >> ppid >> pgrp && state != 'Z' && state != 'X' &&
          match(std::atoi(entry.path().filename().c_str()), pgrp)) {
        alive = true;
      }
    }
    if (!alive) return false;
    if (std::chrono::steady_clock::now() >= deadline) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// A process of group `pgid` still runs (a job's process leads its own group).
inline bool GroupAlive(int pgid, std::chrono::milliseconds patience = std::chrono::seconds(1)) {
  return AnyAlive([pgid](int, int pgrp) { return pgrp == pgid; }, patience);
}

}  // namespace kbus::test
