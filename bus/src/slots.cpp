#include "kbus/slots.hpp"

#include <stdexcept>
#include <string>

namespace kbus {

Slots::Slots(int capacity) : capacity_(capacity) {
  if (capacity < 1) throw std::invalid_argument("slots: capacity must be at least 1, got " + std::to_string(capacity));
}

int Slots::in_use() const {
  std::lock_guard lock(mu_);
  return in_use_;
}

bool Slots::TryTake() {
  std::lock_guard lock(mu_);
  if (in_use_ >= capacity_) return false;
  ++in_use_;
  return true;
}

void Slots::Give() {
  std::function<void()> listener;
  {
    std::lock_guard lock(mu_);
    if (in_use_ > 0) --in_use_;
    listener = listener_;
  }
  if (listener) listener();
}

void Slots::SetListener(std::function<void()> listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

}  // namespace kbus
