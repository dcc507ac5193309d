#pragma once
// kbus-bench's console mode (bench/console.cpp explains the design): what `kbus console` costs
// with a large system behind it. Its start-up time against a plain librdkafka read of the same
// topics, its memory per workflow instance and dead letter, and the latency of its list
// endpoints under many concurrent clients against its cheapest endpoint.

#include <cstdint>
#include <string>

namespace bench {

struct ConsoleOptions {
  std::string brokers = "embedded";  // or HOST:PORT of a real Kafka cluster
  std::int64_t instances = 100000;     // workflow state records, one instance each
  std::int64_t dead_letters = 100000;  // records of the group's dead-letter topic
  std::int64_t jobs = 5000;            // launcher jobs (their events), one per instance at most
  // Partitions of every topic; on the embedded broker raised until every partition stays well
  // under what it keeps (console.cpp says how).
  int partitions = 32;
  int clients = 50;           // concurrent HTTP clients, each on its own keep-alive connection
  double seconds = 5;         // per endpoint
  int payload_bytes = 300;    // of each dead letter's original message, about
};

// Prints the figures; returns 1 when a check failed (a topic that lost records, counts the
// console reports that differ from what was written, a failed request), else 0. Never fails on
// the figures themselves.
int RunConsole(const ConsoleOptions& options);

}  // namespace bench
