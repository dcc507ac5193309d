#pragma once
// What the benchmarks read about their own process: memory from /proc and malloc, and the
// nearest-rank percentile of a set of samples.

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace bench {

// kB from a "Name:   123 kB" line of /proc/self/status; -1 when absent.
inline std::int64_t StatusKb(const char* name) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(name) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::int64_t kb = -1;
    std::sscanf(line.c_str() + prefix.size(), "%ld", &kb);
    return kb;
  }
  return -1;
}

// Bytes malloc has handed out and not had back, mmapped chunks included (all arenas).
inline std::int64_t HeapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<std::int64_t>(mi.uordblks + mi.hblkhd);
}

// The nearest-rank p-quantile (p in (0, 1]) of samples already sorted; -1 without any.
inline double SortedPercentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return -1;
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::min(sorted.size(), std::max<std::size_t>(rank, 1)) - 1];
}

}  // namespace bench
