#pragma once
// Slots: a fixed number of places for work that outlives its handler, such as the launcher's
// child processes. A message type whose DeliveryPolicy names a Slots runs only while a slot is
// free: the worker takes one before it counts the delivery, and while none is free it takes
// no record of that type and pauses the partition, so a backlog stays in Kafka rather than in
// memory. After the handler returns the slot is given back, unless the handler kept it with
// Context::KeepSlot(): it is then given back when the SlotHold is destroyed (the work ended).
//
// Thread safety: every member may be called from any thread. The listener runs on the thread
// that gives a slot back, and must be quick and must not call back into this Slots.

#include <functional>
#include <memory>
#include <mutex>

namespace kbus {

class Slots {
 public:
  explicit Slots(int capacity);  // >= 1, else std::invalid_argument
  Slots(const Slots&) = delete;
  Slots& operator=(const Slots&) = delete;

  int capacity() const { return capacity_; }
  int in_use() const;
  bool TryTake();
  void Give();
  // Called after every Give (a worker wakes to take more work). Null clears it.
  void SetListener(std::function<void()> listener);

 private:
  const int capacity_;
  mutable std::mutex mu_;
  int in_use_ = 0;
  std::function<void()> listener_;
};

// One taken slot; gives it back when destroyed or released. Move-only.
class SlotHold {
 public:
  SlotHold() = default;
  explicit SlotHold(std::shared_ptr<Slots> slots) : slots_(std::move(slots)) {}
  SlotHold(SlotHold&& other) noexcept : slots_(std::move(other.slots_)) {}
  SlotHold& operator=(SlotHold&& other) noexcept {
    if (this != &other) {
      Release();
      slots_ = std::move(other.slots_);
    }
    return *this;
  }
  SlotHold(const SlotHold&) = delete;
  SlotHold& operator=(const SlotHold&) = delete;
  ~SlotHold() { Release(); }

  explicit operator bool() const { return slots_ != nullptr; }
  void Release() {
    if (auto s = std::move(slots_)) s->Give();
  }

 private:
  std::shared_ptr<Slots> slots_;
};

}  // namespace kbus
