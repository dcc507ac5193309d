#pragma once
// kbus-bench's lanes mode (bench/lanes.cpp explains the design): an urgent lane's latency behind
// a backlog of bulk commands, and what the urgent traffic costs bulk's throughput.

#include <string>

namespace bench {

struct LanesOptions {
  std::string brokers = "embedded";  // or HOST:PORT of a real Kafka cluster
  int pairs = 3;                     // alternating baseline/lanes pairs
  int backlog = 50000;               // bulk commands waiting when the worker starts
  int bulk_partitions = 8;           // the embedded broker keeps about 5 MiB per partition
  double urgent_rate = 20;           // urgent commands per second while bulk runs
  double work_ms = 1;                // what each command costs its handler thread (a sleep)
  int weight = 8;                    // the urgent lane's weight; bulk's is 1
  int fetch_wait_ms = 0;             // the Worker's fetch.wait.max.ms; 0: its default
};

// Prints the figures; returns 1 when a pass failed (an urgent command never ran, the backlog
// ran out before the measurement ended), else 0. Never fails on the figures themselves.
int RunLanes(const LanesOptions& options);

}  // namespace bench
