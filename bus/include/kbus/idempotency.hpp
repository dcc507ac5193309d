#pragma once
// Idempotency guards for a handler's own side effects (charge a card, send an e-mail).
//
// kbus delivers at-least-once: a handler may run twice for one message (redelivery after a
// crash or a rebalance, a retry after its visibility timeout). Outgoing kbus messages get
// deterministic ids, so their consumers can drop duplicates; a side effect outside kbus needs
// this guard instead:
//
//   return kbus::RunOnce(store, kbus::IdempotencyKey(ctx), [&] { payments.Charge(...); });
//
// RunOnce claims the key in an IdempotencyStore, runs the side effect only if the claim is new,
// marks the key done when the side effect succeeds and releases it when it fails, so that the
// next delivery may try again. A delivery that finds the key done is acknowledged without
// running the side effect.
//
// The limit, plainly: the guard makes a side effect at-most-once per key only if the side
// effect's completion and Complete() cannot be separated by a crash, i.e. when the store writes
// in the same transaction as the side effect. With a store that is not atomic with the side
// effect (a payment API plus a database, or InMemoryIdempotencyStore), a crash after the side
// effect and before Complete() leaves the claim in progress: redeliveries get Retry until its
// lease expires, and then the side effect runs again. So a lease must outlive the longest run
// of the handler, and truly exactly-once needs the side effect's own idempotency: pass the key
// to the payment API (most have an idempotency-key parameter) or make the write conditional.
//
// Send and Publish after RunOnce, not inside the side effect: a delivery that runs again after
// a crash finds the key done and skips the side effect, and must still send. A
// duplicate sends messages with the same ids as the first delivery did, which their consumers
// can drop.
//
// The key names the side effect, not just the message: two handlers (or two consumer groups)
// that share a store and guard different side effects of one message need different keys, e.g.
// "charge:" + key and "email:" + key, or one store each.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "kbus/context.hpp"
#include "kbus/outcome.hpp"
#include "kbus/result.hpp"

namespace kbus {

// What IdempotencyStore::TryClaim found.
enum class ClaimState {
  kNew,         // the caller now holds the claim: run the side effect, then Complete or Release
  kInProgress,  // another caller holds an unexpired claim
  kDone,        // completed earlier (within the retention period): do not run again
};

struct IdempotencyClaim {
  ClaimState state = ClaimState::kNew;
  // kNew: proof of ownership, passed to Complete and Release. Unique per claim, never reused:
  // a caller whose lease expired and was taken over cannot complete or release the new claim.
  std::string token;
  // kInProgress: how long the other claim's lease still runs (0 if it is about to expire).
  std::chrono::milliseconds lease_remaining{0};
  // kDone: the result stored by Complete; empty when none was stored.
  std::string result;
};

// A durable record of which keys were claimed and completed. Implement it on a database to make
// the guard survive restarts and work across workers; InMemoryIdempotencyStore below is the
// reference implementation and states the same contract in code.
//
// Contract every implementation keeps:
// - Keys are non-empty byte strings compared exactly. An empty key is kInvalidArgument.
// - Claims are leases: a claim expires `lease` after it was made (lease is the store's setting).
//   An expired claim may be taken over by the next TryClaim, which gets kNew and a new token,
//   or forgotten; until then its owner may still Complete or Release it.
// - Completed records are kept at least `retention` after Complete, then may be forgotten, after
//   which the key is new again. A store may forget completed records earlier only to respect a
//   documented size bound (InMemoryIdempotencyStore evicts the oldest first), never unexpired
//   claims.
// - Time comes from one clock all callers share: a store used by several processes measures
//   leases and retention with the database's clock, not each caller's.
// - Errors are values, never exceptions. A failure that may pass (the database is unreachable,
//   the store is full) is retriable(); RunOnce turns it into Retry, and anything else into a
//   dead letter.
//
// Thread safety: every method may be called from any thread at once, and each is atomic with
// respect to the others on the same key (a database gets this from one conditional write per
// call, e.g. INSERT ... ON CONFLICT DO UPDATE ... WHERE expired). In particular, of any number
// of concurrent TryClaim calls on a key that is new, expired or released, exactly one gets kNew.
class IdempotencyStore {
 public:
  virtual ~IdempotencyStore() = default;

  // Claims `key` for the caller: kNew (with a token) if the key is unknown, its completed record
  // has expired, or its claim has expired or was released; kInProgress if another claim is
  // unexpired; kDone if it was completed within the retention period.
  virtual Result<IdempotencyClaim> TryClaim(std::string_view key) = 0;

  // Marks `key` done and stores `result`, if `token` still owns the key's claim (an expired
  // claim nobody took over still counts). Completing again with the same token succeeds and
  // keeps the first result, so a Complete that timed out may be repeated. kNotFound when the
  // claim was lost: taken over by another caller after its lease expired, or forgotten.
  virtual Status Complete(std::string_view key, std::string_view token,
                          std::string_view result = {}) = 0;

  // Drops the claim so that the next TryClaim gets kNew, if `token` still owns it. Otherwise
  // (taken over, forgotten, or already completed) it changes nothing and succeeds: the caller
  // has nothing left to undo.
  virtual Status Release(std::string_view key, std::string_view token) = 0;
};

struct InMemoryIdempotencyOptions {
  // Where time comes from; tests inject a clock they advance by hand. It must not go backwards.
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // Claims plus completed records. When a new claim finds the store full, expired records go
  // first, then the oldest completed ones; unexpired claims are never evicted, so a store full
  // of them refuses the claim with a retriable error.
  std::size_t max_entries = 100'000;
  // How long a claim protects a running side effect: longer than the handler's longest run.
  std::chrono::milliseconds lease = std::chrono::minutes(5);
  // How long a completed key stays done: longer than a redelivery can take to arrive.
  std::chrono::milliseconds retention = std::chrono::hours(24);
  Clock clock;  // empty: std::chrono::steady_clock::now
};

// An IdempotencyStore in this process's memory: it guards against redelivery to this worker
// (retries, a rebalance that hands a partition back), not against a crash or another worker.
// Use a database-backed store for those.
//
// Thread safety: all methods are safe from any thread (one mutex).
class InMemoryIdempotencyStore final : public IdempotencyStore {
 public:
  // Throws std::invalid_argument for max_entries == 0 or a lease or retention that is not
  // positive.
  explicit InMemoryIdempotencyStore(InMemoryIdempotencyOptions options = {});

  Result<IdempotencyClaim> TryClaim(std::string_view key) override;
  Status Complete(std::string_view key, std::string_view token,
                  std::string_view result = {}) override;
  Status Release(std::string_view key, std::string_view token) override;

  // Claims plus completed records held now. Expired completed records are dropped by the next
  // TryClaim, expired claims only when a new key needs their place.
  std::size_t size() const;

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Entry {
    bool done = false;
    std::string token;
    TimePoint expires_at;  // end of the lease, or of the retention period once done
    std::string result;
    // Position in claims_ or done_, both ordered by expiry (lease and retention are fixed).
    std::list<std::string>::iterator order;
  };
  using Entries = std::map<std::string, Entry, std::less<>>;

  TimePoint Now() const;
  void DropExpired(TimePoint now);
  void Erase(Entries::iterator it);

  InMemoryIdempotencyOptions options_;
  mutable std::mutex mu_;
  Entries entries_;
  std::list<std::string> claims_;  // keys with a claim, oldest first
  std::list<std::string> done_;    // completed keys, oldest first
  std::uint64_t next_token_ = 1;
};

// The key for guarding this message's side effect: the kbus-idempotency-key header when the
// sender set one (even if empty: RunOnce then refuses it), else the message id. The view is valid
// while the handler runs.
std::string_view IdempotencyKey(const Context& ctx);

namespace detail {
Outcome RunOnceErased(IdempotencyStore& store, std::string_view key,
                      const std::function<Outcome()>& side_effect);
}  // namespace detail

// Runs `side_effect` unless `key` was already completed, and returns what the handler should
// return. `side_effect` returns Outcome, or void for Ack.
// - Key new (or expired, or released): runs it. On Ack completes the key and returns Ack. On
//   Retry or DeadLetter releases the key and returns that outcome. On an exception releases the
//   key and rethrows it, so the bus counts a failed delivery.
// - Key done: returns Ack without running it (the duplicate is dropped).
// - Key claimed by a delivery still running (or crashed, until its lease expires): returns
//   Retry(lease remaining, "another delivery of this message is in progress ...").
// - Empty key: returns DeadLetter; it never runs a side effect unguarded.
// - Store error: Retry when retriable, else DeadLetter, with the store's message.
// If Complete fails after the side effect succeeded, it still returns Ack and logs a warning:
// the side effect has happened, and retrying could only repeat it.
//
// Thread safety: as the store's; the side effect runs on the calling thread.
template <class Fn>
  requires std::is_invocable_v<Fn&> &&
           (std::is_void_v<std::invoke_result_t<Fn&>> ||
            std::is_convertible_v<std::invoke_result_t<Fn&>, Outcome>)
Outcome RunOnce(IdempotencyStore& store, std::string_view key, Fn&& side_effect) {
  return detail::RunOnceErased(store, key, [&side_effect]() -> Outcome {
    if constexpr (std::is_void_v<std::invoke_result_t<Fn&>>) {
      side_effect();
      return Ack();
    } else {
      return side_effect();
    }
  });
}

}  // namespace kbus
