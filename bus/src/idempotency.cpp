#include "kbus/idempotency.hpp"

#include <stdexcept>

#include "kbus/envelope.hpp"
#include "kbus/log.hpp"

namespace kbus {

namespace {

constexpr std::string_view kEmptyKeyError =
    "idempotency key is empty: set the kbus-idempotency-key header to a non-empty value, or "
    "leave it out to use the message id";

Error LostClaim(std::string_view key) {
  return Error(ErrorCode::kNotFound,
               "idempotency claim on key '" + std::string(key) +
                   "' was lost (its lease expired and another delivery took the key over, or it "
                   "was forgotten): make the lease longer than the handler's longest run");
}

}  // namespace

InMemoryIdempotencyStore::InMemoryIdempotencyStore(InMemoryIdempotencyOptions options)
    : options_(std::move(options)) {
  if (options_.max_entries == 0) {
    throw std::invalid_argument("InMemoryIdempotencyOptions::max_entries must be at least 1");
  }
  if (options_.lease <= std::chrono::milliseconds(0)) {
    throw std::invalid_argument("InMemoryIdempotencyOptions::lease must be positive");
  }
  if (options_.retention <= std::chrono::milliseconds(0)) {
    throw std::invalid_argument("InMemoryIdempotencyOptions::retention must be positive");
  }
  if (!options_.clock) options_.clock = [] { return std::chrono::steady_clock::now(); };
}

InMemoryIdempotencyStore::TimePoint InMemoryIdempotencyStore::Now() const {
  return options_.clock();
}

void InMemoryIdempotencyStore::Erase(Entries::iterator it) {
  (it->second.done ? done_ : claims_).erase(it->second.order);
  entries_.erase(it);
}

// Completed records are forgotten once their retention ends. Expired claims stay until the store
// is full, so that a slow owner nobody overtook can still complete its claim.
void InMemoryIdempotencyStore::DropExpired(TimePoint now) {
  while (!done_.empty()) {
    auto it = entries_.find(done_.front());
    if (now < it->second.expires_at) break;
    Erase(it);
  }
}

Result<IdempotencyClaim> InMemoryIdempotencyStore::TryClaim(std::string_view key) {
  if (key.empty()) return Error(ErrorCode::kInvalidArgument, std::string(kEmptyKeyError));
  std::lock_guard lock(mu_);
  const TimePoint now = Now();
  DropExpired(now);

  auto it = entries_.find(key);
  if (it != entries_.end()) {
    Entry& e = it->second;
    if (e.done) {  // unexpired, or DropExpired would have erased it
      return IdempotencyClaim{.state = ClaimState::kDone, .result = e.result};
    }
    if (now < e.expires_at) {
      return IdempotencyClaim{
          .state = ClaimState::kInProgress,
          .lease_remaining = std::chrono::ceil<std::chrono::milliseconds>(e.expires_at - now)};
    }
    // The owner's lease ran out (it crashed, or is slower than the lease): take the key over.
    claims_.erase(e.order);
    e.order = claims_.insert(claims_.end(), it->first);
  } else {
    if (entries_.size() >= options_.max_entries) {
      while (!claims_.empty() && entries_.size() >= options_.max_entries) {
        auto oldest = entries_.find(claims_.front());
        if (now < oldest->second.expires_at) break;
        Erase(oldest);
      }
      if (entries_.size() >= options_.max_entries && !done_.empty()) {
        Erase(entries_.find(done_.front()));
      }
      if (entries_.size() >= options_.max_entries) {
        return Error(ErrorCode::kInternal,
                     "idempotency store is full: " + std::to_string(entries_.size()) +
                         " unexpired claims and no completed key to evict: raise max_entries or "
                         "shorten the lease",
                     /*retriable=*/true);
      }
    }
    it = entries_.emplace(std::string(key), Entry{}).first;
    it->second.order = claims_.insert(claims_.end(), it->first);
  }
  Entry& e = it->second;
  e.token = std::to_string(next_token_++);
  e.expires_at = now + options_.lease;
  return IdempotencyClaim{.state = ClaimState::kNew, .token = e.token};
}

Status InMemoryIdempotencyStore::Complete(std::string_view key, std::string_view token,
                                          std::string_view result) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.token != token) return LostClaim(key);
  Entry& e = it->second;
  if (e.done) return Ok();  // a repeated Complete keeps the first result
  claims_.erase(e.order);
  e.order = done_.insert(done_.end(), it->first);
  e.done = true;
  e.expires_at = Now() + options_.retention;
  e.result = std::string(result);
  return Ok();
}

Status InMemoryIdempotencyStore::Release(std::string_view key, std::string_view token) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it != entries_.end() && !it->second.done && it->second.token == token) Erase(it);
  return Ok();
}

std::size_t InMemoryIdempotencyStore::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

std::string_view IdempotencyKey(const Context& ctx) {
  if (auto key = ctx.record().FindHeader(header::kIdempotencyKey)) return *key;
  return ctx.envelope().message_id;
}

namespace detail {

namespace {

// The side effect failed: let the next delivery claim the key at once. If this fails too, the
// claim expires with its lease, and redeliveries get Retry until then.
void ReleaseAfterFailure(IdempotencyStore& store, std::string_view key, std::string_view token) {
  try {
    if (Status released = store.Release(key, token); !released.ok()) {
      Log(LogLevel::kWarn, "idempotency: could not release a failed claim; it ends with its lease",
          {{"key", key}, {"error", released.error().ToString()}});
    }
  } catch (const std::exception& e) {  // the contract says values, but keep the caller's error
    Log(LogLevel::kWarn, "idempotency: releasing a failed claim threw; it ends with its lease",
        {{"key", key}, {"error", e.what()}});
  }
}

}  // namespace

Outcome RunOnceErased(IdempotencyStore& store, std::string_view key,
                      const std::function<Outcome()>& side_effect) {
  if (key.empty()) return DeadLetter(std::string(kEmptyKeyError));
  Result<IdempotencyClaim> claim = store.TryClaim(key);
  if (!claim.ok()) {
    std::string error = "idempotency store: " + claim.error().ToString();
    if (claim.error().retriable()) return Retry(std::chrono::milliseconds(0), std::move(error));
    return DeadLetter(std::move(error));
  }
  switch (claim->state) {
    case ClaimState::kDone:
      return Ack();
    case ClaimState::kInProgress:
      return Retry(claim->lease_remaining,
                   "another delivery of this message is in progress (idempotency key '" +
                       std::string(key) + "', its lease ends in " +
                       std::to_string(claim->lease_remaining.count()) + " ms)");
    case ClaimState::kNew:
      break;
  }

  const std::string& token = claim->token;
  Outcome outcome = Ack();
  try {
    outcome = side_effect();
  } catch (...) {
    ReleaseAfterFailure(store, key, token);
    throw;
  }
  if (outcome.kind() != Outcome::Kind::kAck) {
    ReleaseAfterFailure(store, key, token);
    return outcome;
  }
  // The side effect has happened: whatever Complete says, a retry could only repeat it.
  if (Status completed = store.Complete(key, token); !completed.ok()) {
    Log(LogLevel::kWarn,
        "idempotency: the side effect succeeded but its key could not be marked done; a "
        "redelivery after the lease may repeat it",
        {{"key", key}, {"error", completed.error().ToString()}});
  }
  return outcome;
}

}  // namespace detail

}  // namespace kbus
