// kbus-metrics-bench: what one /metrics scrape costs with 10,000 label series.
//
//   kbus-metrics-bench            100 families x 100 series, 2,000 renders, 500 HTTP scrapes
//   kbus-metrics-bench --quick    smoke test: 100 renders, 50 scrapes (ctest label "bench")
//
// The registry: 100 families of 100 series each, two labels per series (topic, partition):
// 45 counter families, 45 gauge families and 10 histogram families with DurationBuckets()
// (16 bounds, so 19 lines per series). A collector sets 100 gauges at each render, as the
// worker's lag collector does.
//
// Measured, each as the median of its repetitions:
//   render      Registry::RenderTo into a buffer kept between renders, as ops::Server does
//   render new  Registry::Render into a fresh string
//   http        a full GET /metrics through ops::Server on loopback, one kept-alive connection
// Allocations: this program replaces the global operator new and counts calls. For http the
// count covers the whole process (server threads and the client) and is split by thread: the
// client's own (the benchmark's thread) and the rest (the server).

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "kbus/health.hpp"
#include "kbus/metrics.hpp"
#include "kbus/ops/server.hpp"

// ---- allocation counting ------------------------------------------------------------------------

namespace {
std::atomic<std::uint64_t> g_allocations{0};
thread_local std::uint64_t t_allocations = 0;

void* Allocate(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  ++t_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return Allocate(n); }
void* operator new[](std::size_t n) { return Allocate(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

using Clock = std::chrono::steady_clock;

struct Figures {
  double median_us = 0, min_us = 0, max_us = 0;
  double allocations = 0;         // per iteration, whole process
  double thread_allocations = 0;  // per iteration, the calling thread only
};

template <class Body>
Figures Measure(int iterations, Body body) {
  body();  // warm-up: buffers grown, connections open
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(iterations));
  const std::uint64_t a0 = g_allocations.load();
  const std::uint64_t t0 = t_allocations;
  for (int i = 0; i < iterations; ++i) {
    const auto start = Clock::now();
    body();
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  const std::uint64_t a1 = g_allocations.load();
  const std::uint64_t t1 = t_allocations;
  std::sort(us.begin(), us.end());
  Figures f;
  f.median_us = us[us.size() / 2];
  f.min_us = us.front();
  f.max_us = us.back();
  f.allocations = static_cast<double>(a1 - a0) / iterations;
  f.thread_allocations = static_cast<double>(t1 - t0) / iterations;
  return f;
}

void Print(const char* what, const Figures& f, std::size_t series) {
  std::printf("%-11s median %9.1f us [%8.1f..%9.1f]  %6.1f ns/series  allocations %8.1f (this thread %.1f)\n",
              what, f.median_us, f.min_us, f.max_us, f.median_us * 1000 / static_cast<double>(series),
              f.allocations, f.thread_allocations);
}

int Run(int families, int per_family, int renders, int scrapes) {
  kbus::metrics::Registry registry;
  std::vector<kbus::metrics::Gauge*> collected;
  std::size_t series = 0;
  for (int f = 0; f < families; ++f) {
    const std::string n = std::to_string(f);
    const int kind = f % 10 == 9 ? 2 : f % 2;  // one family in ten a histogram
    for (int s = 0; s < per_family; ++s) {
      const std::string topic = "bench.topic-" + std::to_string(s / 16);
      const std::string partition = std::to_string(s % 16);
      if (kind == 0) {
        registry.AddCounter("kbus_bench_" + n + "_total", "Bench counter " + n + ".", {"topic", "partition"})
            .With({topic, partition})
            .Inc(static_cast<std::uint64_t>(s) * 1000 + 7);
      } else if (kind == 1) {
        auto& g = registry.AddGauge("kbus_bench_" + n + "_records", "Bench gauge " + n + ".", {"topic", "partition"})
                      .With({topic, partition});
        g.Set(s * 12.5);
        if (f == 1) collected.push_back(&g);
      } else {
        auto& h = registry
                      .AddHistogram("kbus_bench_" + n + "_seconds", "Bench histogram " + n + ".",
                                    {"topic", "partition"}, kbus::metrics::DurationBuckets())
                      .With({topic, partition});
        for (int k = 0; k < 20; ++k) h.Observe(0.0005 * (k + s));
      }
      ++series;
    }
  }
  double tick = 0;
  kbus::metrics::CollectorHandle collector = registry.OnCollect([&] {
    tick += 1;
    for (auto* g : collected) g->Set(tick);
  });

  std::string buffer;
  registry.RenderTo(buffer);
  const std::size_t lines = static_cast<std::size_t>(std::count(buffer.begin(), buffer.end(), '\n'));
  std::printf("kbus-metrics-bench: one /metrics scrape of %d families x %d series = %zu label series\n", families,
              per_family, series);
  std::printf("exposition  %zu lines, %.1f KiB\n\n", lines, static_cast<double>(buffer.size()) / 1024);

  const Figures render = Measure(renders, [&] {
    buffer.clear();
    registry.RenderTo(buffer);
  });
  Print("render", render, series);
  const Figures fresh = Measure(renders, [&] {
    std::string out = registry.Render();
    if (out.empty()) std::abort();
  });
  Print("render new", fresh, series);

  kbus::health::Board board;
  kbus::ops::Server server({.bind_address = "127.0.0.1", .port = 0}, registry, board);
  httplib::Client client("127.0.0.1", server.port());
  client.set_keep_alive(true);
  std::size_t body = 0;
  bool failed = false;
  const Figures http = Measure(scrapes, [&] {
    auto res = client.Get("/metrics");
    if (!res || res->status != 200) {
      failed = true;
      return;
    }
    body = res->body.size();
  });
  Print("http", http, series);
  std::printf("            http: server side %.1f allocations per scrape, client side %.1f; body %.1f KiB\n",
              http.allocations - http.thread_allocations, http.thread_allocations,
              static_cast<double>(body) / 1024);
  std::printf("RESULT series=%zu render_us=%.1f render_allocs=%.1f http_us=%.1f http_server_allocs=%.1f\n", series,
              render.median_us, render.allocations, http.median_us, http.allocations - http.thread_allocations);
  if (failed) {
    std::printf("PROBLEM     a scrape failed\n");
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  int families = 100, per_family = 100, renders = 2000, scrapes = 500;
  bool quick = false;
  po::options_description desc("kbus-metrics-bench: what one /metrics scrape costs\nOptions");
  desc.add_options()("help,h", "this help")
      ("families", po::value(&families)->default_value(families), "metric families")
      ("series", po::value(&per_family)->default_value(per_family), "label series per family")
      ("renders", po::value(&renders)->default_value(renders), "timed renders")
      ("scrapes", po::value(&scrapes)->default_value(scrapes), "timed HTTP scrapes")
      ("quick", po::bool_switch(&quick), "smoke test: 100 renders and 50 scrapes unless given");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kbus-metrics-bench: %s (see --help)\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << '\n';
    return 0;
  }
  if (quick) {
    if (vm["renders"].defaulted()) renders = 100;
    if (vm["scrapes"].defaulted()) scrapes = 50;
  }
  if (families < 1 || per_family < 1 || renders < 1 || scrapes < 1) {
    std::fprintf(stderr, "kbus-metrics-bench: every count must be at least 1\n");
    return 2;
  }
  try {
    return Run(families, per_family, renders, scrapes);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kbus-metrics-bench: %s\n", e.what());
    return 1;
  }
}
