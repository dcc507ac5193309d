#include "kbus/health.hpp"

#include <utility>

#include "kbus/json.hpp"

namespace kbus::health {

ProbeHandle::ProbeHandle(ProbeHandle&& other) noexcept
    : board_(std::exchange(other.board_, nullptr)), id_(other.id_) {}

ProbeHandle& ProbeHandle::operator=(ProbeHandle&& other) noexcept {
  if (this != &other) {
    Reset();
    board_ = std::exchange(other.board_, nullptr);
    id_ = other.id_;
  }
  return *this;
}

ProbeHandle::~ProbeHandle() { Reset(); }

void ProbeHandle::Reset() noexcept {
  if (board_) board_->Remove(id_);
  board_ = nullptr;
}

ProbeHandle Board::Add(std::string name, std::function<Report()> probe) {
  std::lock_guard lock(mu_);
  const std::uint64_t id = next_++;
  probes_.emplace(id, std::make_pair(std::move(name), std::move(probe)));
  return ProbeHandle(this, id);
}

void Board::Remove(std::uint64_t id) noexcept {
  std::lock_guard lock(mu_);
  probes_.erase(id);
}

void Board::SetShuttingDown() noexcept {
  std::lock_guard lock(mu_);
  shutting_down_ = true;
}

bool Board::shutting_down() const noexcept {
  std::lock_guard lock(mu_);
  return shutting_down_;
}

Board::Answer Board::Check() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<const std::string*, Report>> reports;
  reports.reserve(probes_.size());
  Answer a;
  std::int64_t active = 0;
  for (const auto& [id, entry] : probes_) {
    Report r;
    try {
      r = entry.second();
    } catch (const std::exception& e) {
      r = Report{.live = false, .ready = false, .reason = std::string("its health probe failed: ") + e.what()};
    } catch (...) {
      // Anything else thrown would leave Check() and fail the request with no reason at all.
      r = Report{.live = false, .ready = false, .reason = "its health probe failed: an unknown exception"};
    }
    a.live = a.live && r.live;
    a.ready = a.ready && r.ready;
    active += r.active_work;
    reports.emplace_back(&entry.first, std::move(r));
  }
  if (probes_.empty()) a.ready = false;
  if (shutting_down_) a.ready = false;

  JsonWriter w(InvalidUtf8::kReplace);
  w.StartObject();
  w.Key("status");
  w.String(!a.live ? "unhealthy" : shutting_down_ ? "shutting_down" : !a.ready ? "not_ready" : "ok");
  w.Key("live");
  w.Bool(a.live);
  w.Key("ready");
  w.Bool(a.ready);
  w.Key("shutting_down");
  w.Bool(shutting_down_);
  w.Key("active_work");
  w.Int64(active);
  w.Key("components");
  w.StartObject();
  for (const auto& [name, r] : reports) {
    w.Key(*name);
    w.StartObject();
    w.Key("live");
    w.Bool(r.live);
    w.Key("ready");
    w.Bool(r.ready);
    if (!r.reason.empty()) {
      w.Key("reason");
      w.String(r.reason);
    }
    w.Key("active_work");
    w.Int64(r.active_work);
    for (const auto& [key, value] : r.details) {
      w.Key(key);
      if (auto* i = std::get_if<std::int64_t>(&value)) {
        w.Int64(*i);
      } else if (auto* s = std::get_if<std::string>(&value)) {
        w.String(*s);
      } else {
        w.Bool(std::get<bool>(value));
      }
    }
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
  a.json = w.Take();
  return a;
}

}  // namespace kbus::health
