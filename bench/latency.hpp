#pragma once
// kbus-bench's latency mode (bench/latency.cpp explains the design): how long a command takes
// through one consume -> handle -> produce hop, on a plain librdkafka loop (a) and on a kbus
// Worker (b), at a fixed send rate.

#include <string>

namespace bench {

struct LatencyOptions {
  std::string brokers = "embedded";  // or HOST:PORT of a real Kafka cluster
  int pairs = 3;                     // alternating a/b pairs
  double rate = 2000;                // commands sent per second
  double seconds = 10;               // measured, after the warm-up
  double warmup_seconds = 1;         // sent at the rate, reported, not in the percentiles
  int partitions = 4;                // of the input and output topics
  int fetch_wait_ms = 0;             // both hops' fetch.wait.max.ms; 0: the Worker's default
};

// Prints the figures; returns 1 when a message went missing or a pass failed, else 0. Never
// fails on the figures themselves.
int RunLatency(const LatencyOptions& options);

}  // namespace bench
