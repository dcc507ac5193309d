#pragma once
// What a process says on /healthz and /readyz: each component (a worker, a workflow host, a
// launcher) registers a probe; the board asks them all and answers for the process.
//
// Liveness (/healthz) fails only when restarting the process is the cure: a poll loop or a
// handler thread that stopped, a handler stuck past its limit. Readiness (/readyz) fails while
// the process cannot do its work yet or any more: the broker unreachable, the group not joined,
// state not loaded, shutting down.
//
// Thread safety: everything here may be used from any thread; probes run on the thread that
// calls Check() and must not block.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

namespace kbus::health {

// One component's answer.
struct Report {
  bool live = true;
  bool ready = true;
  std::string reason;  // why it is not live or not ready: "the group is not joined yet"
  // Handler runs or launched processes in flight. A platform that scales idle containers away
  // keeps one whose process reports active work (docs/operations.md).
  std::int64_t active_work = 0;
  // Shown as is, for people: group, assigned partitions, ...
  std::vector<std::pair<std::string, std::variant<std::int64_t, std::string, bool>>> details;
};

class Board;

// Keeps a probe registered; removes it when destroyed.
class ProbeHandle {
 public:
  ProbeHandle() = default;
  ProbeHandle(ProbeHandle&& other) noexcept;
  ProbeHandle& operator=(ProbeHandle&& other) noexcept;
  ~ProbeHandle();
  void Reset() noexcept;

 private:
  friend class Board;
  ProbeHandle(Board* board, std::uint64_t id) : board_(board), id_(id) {}
  Board* board_ = nullptr;
  std::uint64_t id_ = 0;
};

class Board {
 public:
  struct Answer {
    bool live = true;
    bool ready = true;
    std::string json;  // one line: {"status":"ok","live":true,"ready":true,...,"components":{...}}
  };

  Board() = default;
  Board(const Board&) = delete;
  Board& operator=(const Board&) = delete;

  // `name` keys the component in the JSON ("worker", "workflow video.encode", "launcher").
  [[nodiscard]] ProbeHandle Add(std::string name, std::function<Report()> probe);

  // From now on the process is not ready: it finishes or hands back its work and exits.
  void SetShuttingDown() noexcept;
  bool shutting_down() const noexcept;

  // Asks every probe. Not ready while shutting down or before any probe is registered.
  Answer Check() const;

 private:
  friend class ProbeHandle;
  void Remove(std::uint64_t id) noexcept;

  mutable std::mutex mu_;  // held while probes run, so a removed probe never runs after Remove
  std::map<std::uint64_t, std::pair<std::string, std::function<Report()>>> probes_;
  std::uint64_t next_ = 1;
  bool shutting_down_ = false;
};

}  // namespace kbus::health
