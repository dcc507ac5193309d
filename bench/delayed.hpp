#pragma once
// kbus-bench's delayed mode (bench/delayed.cpp explains the design): how late the scheduler
// delivers delayed messages under a load of pending ones, against a plain librdkafka hop in the
// same process; and what a large backlog of pending messages costs it in memory and load time,
// against a plain librdkafka read of the same records.

#include <cstdint>
#include <string>

namespace bench {

struct DelayedOptions {
  std::string brokers = "embedded";  // or HOST:PORT of a real Kafka cluster
  // Firing: this many delayed messages, due uniformly over [min_delay_s, max_delay_s] after
  // they are sent. 0 skips the part.
  int messages = 10000;
  double min_delay_s = 5;
  double max_delay_s = 65;
  // Loading: this many messages pending (due in a day), read by a fresh scheduler. 0 skips it.
  // On the embedded broker it is capped by the broker's retention (delayed.cpp says how).
  std::int64_t load_messages = 1000000;
  bool load_given = false;  // load_messages came from the command line: refuse rather than cap
  int load_pairs = 3;       // scheduler/raw pairs of the load measurement
  int partitions = 8;       // of every topic
  int payload_bytes = 100;  // JSON payload of each message, about
  long prefetch_ms = 0;     // the scheduler's prefetch; 0: its default
};

// Prints the figures; returns 1 when a check failed (a message delivered early, missing or
// twice; a load that did not finish), else 0. Never fails on the figures themselves.
int RunDelayed(const DelayedOptions& options);

}  // namespace bench
