#pragma once
// MemoryStateStore: instance records in memory, for tests and the test kit (test_kit.hpp
// includes it). Writes can be made to fail. Header-only, so that a test needs no more than
// kbus::workflows to use it.
//
// Thread safety: every member may be called from any thread.

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "kbus/result.hpp"
#include "kbus/workflows/host.hpp"

namespace kbus::workflows {

class MemoryStateStore final : public StateStore {
 public:
  Status Load(std::int32_t partition,
              const std::function<void(std::string_view, std::string_view)>& each) override {
    std::map<std::string, std::string, std::less<>> copy;
    {
      std::lock_guard lock(mu_);
      if (auto it = parts_.find(partition); it != parts_.end()) copy = it->second;
    }
    for (const auto& [k, v] : copy) each(k, v);
    return Ok();
  }

  Status Write(std::int32_t partition, std::string_view key, std::string_view value) override {
    std::lock_guard lock(mu_);
    if (fail_ > 0) {
      --fail_;
      return Error(ErrorCode::kTransport, "the state store refused the write (test failure)", true);
    }
    parts_[partition].insert_or_assign(std::string(key), std::string(value));
    ++writes_;
    return Ok();
  }

  Status Erase(std::int32_t partition, std::string_view key) override {
    std::lock_guard lock(mu_);
    if (auto it = parts_.find(partition); it != parts_.end()) {
      if (auto k = it->second.find(key); k != it->second.end()) it->second.erase(k);
    }
    return Ok();
  }

  // The next `n` writes fail.
  void FailWrites(int n) {
    std::lock_guard lock(mu_);
    fail_ = n;
  }

  std::optional<std::string> Get(std::int32_t partition, std::string_view key) const {
    std::lock_guard lock(mu_);
    auto it = parts_.find(partition);
    if (it == parts_.end()) return std::nullopt;
    auto k = it->second.find(key);
    if (k == it->second.end()) return std::nullopt;
    return k->second;
  }

  std::uint64_t writes() const {
    std::lock_guard lock(mu_);
    return writes_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::int32_t, std::map<std::string, std::string, std::less<>>> parts_;
  int fail_ = 0;
  std::uint64_t writes_ = 0;
};

}  // namespace kbus::workflows
