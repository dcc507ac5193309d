#include "kbus/metrics.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using kbus::metrics::CollectorHandle;
using kbus::metrics::Counter;
using kbus::metrics::Gauge;
using kbus::metrics::Histogram;
using kbus::metrics::Registry;
using ::testing::HasSubstr;
using ::testing::Not;

// The message of the std::invalid_argument `f` throws, or "" when it throws none.
template <class F>
std::string InvalidArgument(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// ---- exposition -------------------------------------------------------------------------------

TEST(Metrics, RendersCountersWithLabelsSortedByTheirValues) {
  Registry r;
  auto& handled = r.AddCounter("kbus_records_handled_total", "Records handled, by type and outcome.",
                               {"type", "outcome"});
  handled.With({"shop.PlaceOrder", "ack"}).Inc(3);
  handled.With({"shop.ChargeCard", "retry"}).Inc();
  handled.With({"shop.ChargeCard", "ack"}).Inc(2);
  EXPECT_EQ(r.Render(),
            "# HELP kbus_records_handled_total Records handled, by type and outcome.\n"
            "# TYPE kbus_records_handled_total counter\n"
            "kbus_records_handled_total{type=\"shop.ChargeCard\",outcome=\"ack\"} 2\n"
            "kbus_records_handled_total{type=\"shop.ChargeCard\",outcome=\"retry\"} 1\n"
            "kbus_records_handled_total{type=\"shop.PlaceOrder\",outcome=\"ack\"} 3\n");
}

TEST(Metrics, ShowsASeriesWithoutLabelsFromTheStartAsZero) {
  Registry r;
  r.AddCounter("kbus_commits_total", "Offset commits.");
  r.AddGauge("kbus_handler_runs_in_flight", "Handler runs in flight.");
  EXPECT_EQ(r.Render(),
            "# HELP kbus_commits_total Offset commits.\n"
            "# TYPE kbus_commits_total counter\n"
            "kbus_commits_total 0\n"
            "# HELP kbus_handler_runs_in_flight Handler runs in flight.\n"
            "# TYPE kbus_handler_runs_in_flight gauge\n"
            "kbus_handler_runs_in_flight 0\n");
}

TEST(Metrics, ShowsAFamilyWithLabelsButNoSeriesYetAsItsHeaderOnly) {
  Registry r;
  r.AddCounter("kbus_dead_letters_total", "Records dead-lettered, by reason.", {"reason"});
  EXPECT_EQ(r.Render(),
            "# HELP kbus_dead_letters_total Records dead-lettered, by reason.\n"
            "# TYPE kbus_dead_letters_total counter\n");
}

TEST(Metrics, RendersGaugesAsShortestRoundTripNumbers) {
  Registry r;
  auto& lag = r.AddGauge("kbus_consumer_lag_records", "Records behind.", {"topic", "partition"});
  lag.With({"t", "0"}).Set(12);
  lag.With({"t", "1"}).Set(0.1);
  lag.With({"t", "2"}).Set(-3.5);
  lag.With({"t", "3"}).Set(1e21);
  lag.With({"t", "4"}).Set(std::numeric_limits<double>::infinity());
  lag.With({"t", "5"}).Set(-std::numeric_limits<double>::infinity());
  lag.With({"t", "6"}).Set(std::nan(""));
  auto& g = lag.With({"t", "7"});
  g.Set(1);
  g.Add(2.5);
  g.Add(-0.5);
  EXPECT_EQ(r.Render(),
            "# HELP kbus_consumer_lag_records Records behind.\n"
            "# TYPE kbus_consumer_lag_records gauge\n"
            "kbus_consumer_lag_records{topic=\"t\",partition=\"0\"} 12\n"
            "kbus_consumer_lag_records{topic=\"t\",partition=\"1\"} 0.1\n"
            "kbus_consumer_lag_records{topic=\"t\",partition=\"2\"} -3.5\n"
            "kbus_consumer_lag_records{topic=\"t\",partition=\"3\"} 1e+21\n"
            "kbus_consumer_lag_records{topic=\"t\",partition=\"4\"} +Inf\n"
            "kbus_consumer_lag_records{topic=\"t\",partition=\"5\"} -Inf\n"
            "kbus_consumer_lag_records{topic=\"t\",partition=\"6\"} NaN\n"
            "kbus_consumer_lag_records{topic=\"t\",partition=\"7\"} 3\n");
}

TEST(Metrics, RendersHistogramBucketsCumulativelyWithInfEqualToCountAndTheSum) {
  Registry r;
  auto& d = r.AddHistogram("kbus_handler_duration_seconds", "Handler run time.", {"type"}, {0.1, 1, 2.5});
  auto& h = d.With({"shop.PlaceOrder"});
  h.Observe(0.1);   // on a bound: that bucket (le is "less or equal")
  h.Observe(0.25);
  h.Observe(0.5);
  h.Observe(4);     // past every bound: only +Inf
  d.With({"a.Empty"});
  EXPECT_EQ(r.Render(),
            "# HELP kbus_handler_duration_seconds Handler run time.\n"
            "# TYPE kbus_handler_duration_seconds histogram\n"
            "kbus_handler_duration_seconds_bucket{type=\"a.Empty\",le=\"0.1\"} 0\n"
            "kbus_handler_duration_seconds_bucket{type=\"a.Empty\",le=\"1\"} 0\n"
            "kbus_handler_duration_seconds_bucket{type=\"a.Empty\",le=\"2.5\"} 0\n"
            "kbus_handler_duration_seconds_bucket{type=\"a.Empty\",le=\"+Inf\"} 0\n"
            "kbus_handler_duration_seconds_sum{type=\"a.Empty\"} 0\n"
            "kbus_handler_duration_seconds_count{type=\"a.Empty\"} 0\n"
            "kbus_handler_duration_seconds_bucket{type=\"shop.PlaceOrder\",le=\"0.1\"} 1\n"
            "kbus_handler_duration_seconds_bucket{type=\"shop.PlaceOrder\",le=\"1\"} 3\n"
            "kbus_handler_duration_seconds_bucket{type=\"shop.PlaceOrder\",le=\"2.5\"} 3\n"
            "kbus_handler_duration_seconds_bucket{type=\"shop.PlaceOrder\",le=\"+Inf\"} 4\n"
            "kbus_handler_duration_seconds_sum{type=\"shop.PlaceOrder\"} 4.85\n"
            "kbus_handler_duration_seconds_count{type=\"shop.PlaceOrder\"} 4\n");
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(h.bucket_count(3), 1u);  // not cumulative: the +Inf bucket alone
}

TEST(Metrics, RendersAHistogramWithoutLabelsWithLeAsItsOnlyLabel) {
  Registry r;
  auto& h = r.AddHistogram("kbus_state_write_seconds", "State writes.", {}, {0.005});
  h.With({}).Observe(0.001);
  EXPECT_EQ(r.Render(),
            "# HELP kbus_state_write_seconds State writes.\n"
            "# TYPE kbus_state_write_seconds histogram\n"
            "kbus_state_write_seconds_bucket{le=\"0.005\"} 1\n"
            "kbus_state_write_seconds_bucket{le=\"+Inf\"} 1\n"
            "kbus_state_write_seconds_sum 0.001\n"
            "kbus_state_write_seconds_count 1\n");
}

TEST(Metrics, EscapesBackslashQuoteAndNewlineInLabelValuesAndBackslashNewlineInHelp) {
  Registry r;
  auto& c = r.AddCounter("kbus_x_total", "A \"quoted\" help\\text\nover two lines.", {"reason"});
  c.With({"say \"no\"\\or\nelse"}).Inc();
  EXPECT_EQ(r.Render(),
            "# HELP kbus_x_total A \"quoted\" help\\\\text\\nover two lines.\n"
            "# TYPE kbus_x_total counter\n"
            "kbus_x_total{reason=\"say \\\"no\\\"\\\\or\\nelse\"} 1\n");
}

TEST(Metrics, ReplacesInvalidUtf8InLabelValuesAndHelp) {
  Registry r;
  auto& c = r.AddCounter("kbus_y_total", "bad \xff help", {"topic"});
  c.With({"caf\xc3\xa9"}).Inc();  // valid: kept
  c.With({"ab\xc3"}).Inc();       // a cut sequence
  c.With({std::string("x\x80y")}).Inc(2);
  EXPECT_EQ(r.Render(),
            "# HELP kbus_y_total bad \xef\xbf\xbd help\n"
            "# TYPE kbus_y_total counter\n"
            "kbus_y_total{topic=\"ab\xef\xbf\xbd\"} 1\n"
            "kbus_y_total{topic=\"caf\xc3\xa9\"} 1\n"
            "kbus_y_total{topic=\"x\xef\xbf\xbdy\"} 2\n");
  // The same bytes find the same series again.
  EXPECT_EQ(&c.With({"ab\xc3"}), &c.With({"ab\xef\xbf\xbd"}));
}

TEST(Metrics, RendersFamiliesInTheOrderTheyWereAdded) {
  Registry r;
  r.AddGauge("kbus_b", "b.");
  r.AddCounter("kbus_a_total", "a.");
  const std::string out = r.Render();
  EXPECT_LT(out.find("kbus_b"), out.find("kbus_a_total"));
}

TEST(Metrics, RenderToAppendsToTheBufferItIsGiven) {
  Registry r;
  r.AddCounter("kbus_c_total", "c.");
  std::string out = "kept\n";
  r.RenderTo(out);
  EXPECT_EQ(out, "kept\n# HELP kbus_c_total c.\n# TYPE kbus_c_total counter\nkbus_c_total 0\n");
}

// ---- validation -------------------------------------------------------------------------------

TEST(Metrics, RefusesNamesPrometheusRefuses) {
  Registry r;
  for (const char* bad : {"", "9lives", "kbus-records", "kbus.records", "kbus records", "kbus_caf\xc3\xa9"}) {
    EXPECT_THAT(InvalidArgument([&] { r.AddCounter(bad, "h"); }),
                HasSubstr("metric name '" + std::string(bad) + "' is not allowed by Prometheus"))
        << bad;
  }
  EXPECT_EQ(InvalidArgument([&] { r.AddGauge(":recorded:rule", "h"); }), "");  // colons are allowed
  EXPECT_EQ(InvalidArgument([&] { r.AddGauge("_private", "h"); }), "");
}

TEST(Metrics, RefusesLabelNamesPrometheusRefusesOrReserves) {
  Registry r;
  for (const char* bad : {"", "1st", "a:b", "a-b", "__name__", "__x", "le"}) {
    EXPECT_THAT(InvalidArgument([&] { r.AddCounter("kbus_l_total", "h", {"ok", bad}); }),
                HasSubstr("label name '" + std::string(bad) + "' is not allowed by Prometheus"))
        << bad;
  }
  EXPECT_EQ(InvalidArgument([&] { r.AddCounter("kbus_l_total", "h", {"_ok", "ok2"}); }), "");
}

TEST(Metrics, RefusesTheSameLabelNameTwice) {
  Registry r;
  EXPECT_THAT(InvalidArgument([&] { r.AddCounter("kbus_twice_total", "h", {"topic", "partition", "topic"}); }),
              HasSubstr("label name 'topic' appears twice"));
}

TEST(Metrics, RefusesHistogramBoundsThatAreNotFiniteAndStrictlyIncreasing) {
  Registry r;
  const double inf = std::numeric_limits<double>::infinity();
  for (const std::vector<double>& bad :
       {std::vector<double>{1, 1}, std::vector<double>{2, 1}, std::vector<double>{1, inf},
        std::vector<double>{std::nan("")}}) {
    EXPECT_THAT(InvalidArgument([&] { r.AddHistogram("kbus_h_seconds", "h", {}, bad); }),
                HasSubstr("finite and strictly increasing"));
  }
  EXPECT_THAT(InvalidArgument([&] { Histogram h({0.5, 0.1}); }), HasSubstr("strictly increasing"));
  EXPECT_EQ(InvalidArgument([&] { r.AddHistogram("kbus_h_seconds", "h", {}, {}); }), "");  // +Inf only
}

TEST(Metrics, RefusesTheWrongNumberOfLabelValues) {
  Registry r;
  auto& c = r.AddCounter("kbus_v_total", "h", {"topic", "partition"});
  EXPECT_THAT(InvalidArgument([&] { c.With({"t"}); }),
              HasSubstr("kbus_v_total: 2 label values expected, got 1"));
  EXPECT_THAT(InvalidArgument([&] { c.With(std::vector<std::string>{"t", "0", "x"}); }),
              HasSubstr("2 label values expected, got 3"));
}

// ---- registration -----------------------------------------------------------------------------

TEST(Metrics, ReturnsTheSameFamilyForTheSameNameKindAndLabels) {
  Registry r;
  auto& a = r.AddCounter("kbus_shared_total", "Shared.", {"type"});
  auto& b = r.AddCounter("kbus_shared_total", "Another help is ignored.", {"type"});
  EXPECT_EQ(&a, &b);
  a.With({"x"}).Inc();
  EXPECT_EQ(b.With({"x"}).value(), 1u);
  auto& h1 = r.AddHistogram("kbus_shared_seconds", "h", {}, {1, 2});
  EXPECT_EQ(&h1, &r.AddHistogram("kbus_shared_seconds", "h", {}, {1, 2}));
  EXPECT_THAT(r.Render(), HasSubstr("# HELP kbus_shared_total Shared.\n"));
}

TEST(Metrics, RefusesTheSameNameWithAnotherKindLabelsOrBuckets) {
  Registry r;
  r.AddCounter("kbus_taken_total", "h", {"type"});
  r.AddHistogram("kbus_taken_seconds", "h", {}, {1, 2});
  const std::string again = "is already registered with another kind, labels or buckets";
  EXPECT_THAT(InvalidArgument([&] { r.AddGauge("kbus_taken_total", "h", {"type"}); }), HasSubstr(again));
  EXPECT_THAT(InvalidArgument([&] { r.AddCounter("kbus_taken_total", "h", {"topic"}); }), HasSubstr(again));
  EXPECT_THAT(InvalidArgument([&] { r.AddCounter("kbus_taken_total", "h"); }), HasSubstr(again));
  EXPECT_THAT(InvalidArgument([&] { r.AddHistogram("kbus_taken_seconds", "h", {}, {1, 3}); }), HasSubstr(again));
  EXPECT_THAT(InvalidArgument([&] { r.AddHistogram("kbus_taken_total", "h", {"type"}, {1}); }), HasSubstr(again));
}

TEST(Metrics, RefusesANameAHistogramAlreadyUsesForItsSeries) {
  Registry r;
  r.AddHistogram("kbus_run_seconds", "h", {}, {1});
  for (const char* clash : {"kbus_run_seconds_bucket", "kbus_run_seconds_sum", "kbus_run_seconds_count"}) {
    EXPECT_THAT(InvalidArgument([&] { r.AddGauge(clash, "h"); }), HasSubstr("clashes with the series of"))
        << clash;
  }
  r.AddCounter("kbus_jobs_count", "h");
  EXPECT_EQ(InvalidArgument([&] { r.AddHistogram("kbus_jobs", "h", {}, {1}); }),
            "metric 'kbus_jobs_count' clashes with the series of histogram 'kbus_jobs'");
  r.AddHistogram("kbus_wait_sum", "h", {}, {1});
  EXPECT_EQ(InvalidArgument([&] { r.AddHistogram("kbus_wait", "h", {}, {1}); }),
            "metric 'kbus_wait_sum' clashes with the series of histogram 'kbus_wait'");
}

TEST(Metrics, KeepsASeriesReferenceStableAsOtherSeriesAreAdded) {
  Registry r;
  auto& c = r.AddCounter("kbus_stable_total", "h", {"n"});
  Counter& first = c.With({"0"});
  for (int i = 1; i < 1000; ++i) c.With({std::to_string(i)});
  first.Inc();
  EXPECT_EQ(&first, &c.With({"0"}));
  EXPECT_EQ(c.With({"0"}).value(), 1u);
}

// ---- removal ----------------------------------------------------------------------------------

TEST(Metrics, RemoveAndRemoveIfDropSeriesFromTheExposition) {
  Registry r;
  auto& lag = r.AddGauge("kbus_lag_records", "h", {"topic", "partition"});
  for (const char* t : {"a", "b"}) {
    for (const char* p : {"0", "1"}) lag.With({t, p}).Set(1);
  }
  lag.RemoveIf([](const std::vector<std::string>& v) { return v[0] == "a"; });
  lag.Remove({"b", "1"});
  lag.Remove({"never", "there"});  // nothing to drop: fine
  EXPECT_EQ(r.Render(),
            "# HELP kbus_lag_records h\n"
            "# TYPE kbus_lag_records gauge\n"
            "kbus_lag_records{topic=\"b\",partition=\"0\"} 1\n");
  EXPECT_EQ(lag.With({"a", "0"}).value(), 0);  // made again, from 0
}

// ---- collectors -------------------------------------------------------------------------------

TEST(Metrics, RunsCollectorsAtEachRenderUntilTheirHandleGoes) {
  Registry r;
  auto& g = r.AddGauge("kbus_partitions_assigned", "h");
  int runs = 0;
  {
    CollectorHandle handle = r.OnCollect([&] { g.With({}).Set(++runs); });
    EXPECT_THAT(r.Render(), HasSubstr("kbus_partitions_assigned 1\n"));
    EXPECT_THAT(r.Render(), HasSubstr("kbus_partitions_assigned 2\n"));
    CollectorHandle moved = std::move(handle);  // still registered, once
    EXPECT_THAT(r.Render(), HasSubstr("kbus_partitions_assigned 3\n"));
  }
  EXPECT_THAT(r.Render(), HasSubstr("kbus_partitions_assigned 3\n"));
  EXPECT_EQ(runs, 3);

  CollectorHandle reset = r.OnCollect([&] { ++runs; });
  reset.Reset();
  reset.Reset();  // twice is fine
  (void)r.Render();
  EXPECT_EQ(runs, 3);
}

TEST(Metrics, MoveAssigningAHandleUnregistersTheCollectorItHeld) {
  Registry r;
  int a = 0, b = 0;
  CollectorHandle h = r.OnCollect([&] { ++a; });
  h = r.OnCollect([&] { ++b; });
  (void)r.Render();
  EXPECT_EQ(a, 0);
  EXPECT_EQ(b, 1);
}

TEST(Metrics, CollectorsMayUpdateAndRemoveSeriesOfTheRegistry) {
  Registry r;
  auto& lag = r.AddGauge("kbus_lag2_records", "h", {"partition"});
  lag.With({"7"}).Set(5);
  CollectorHandle h = r.OnCollect([&] {
    lag.RemoveIf([](const std::vector<std::string>&) { return true; });
    lag.With({"3"}).Set(2);
  });
  EXPECT_EQ(r.Render(), "# HELP kbus_lag2_records h\n# TYPE kbus_lag2_records gauge\nkbus_lag2_records{partition=\"3\"} 2\n");
}

// A component unregistering its collector (its handle destroyed) while a scrape renders on
// another thread: once the handle is gone, the collector never runs again, so it may capture
// state that dies with the component. Run under TSan to check the locking too.
TEST(Metrics, AHandleDestroyedWhileAnotherThreadRendersStopsItsCollectorFirst) {
  Registry r;
  auto& g = r.AddGauge("kbus_component_state", "h", {"component"});
  std::atomic<bool> stop{false};
  std::atomic<int> ran_after_destruction{0};
  std::atomic<int> renders{0};
  std::thread scraper([&] {
    std::string out;
    while (!stop.load()) {
      out.clear();
      r.RenderTo(out);
      renders.fetch_add(1);
    }
  });
  for (int i = 0; i < 300; ++i) {
    struct Component {
      std::atomic<bool> alive{true};
      int value = 0;
    };
    auto component = std::make_unique<Component>();
    Component* c = component.get();
    {
      CollectorHandle handle = r.OnCollect([c, &g, &ran_after_destruction] {
        if (!c->alive.load()) ran_after_destruction.fetch_add(1);
        g.With({"x"}).Set(++c->value);
      });
      std::this_thread::yield();
    }
    component->alive.store(false);  // the handle is gone: the collector must not run any more
    std::this_thread::yield();
    component.reset();
  }
  while (renders.load() < 10) std::this_thread::yield();
  stop.store(true);
  scraper.join();
  EXPECT_EQ(ran_after_destruction.load(), 0);
}

TEST(Metrics, SeriesUpdatedFromManyThreadsWhileRenderingAddUp) {
  Registry r;
  auto& c = r.AddCounter("kbus_many_total", "h", {"thread"});
  auto& h = r.AddHistogram("kbus_many_seconds", "h", {}, {0.5});
  auto& g = r.AddGauge("kbus_many_in_flight", "h");
  std::atomic<bool> stop{false};
  std::thread scraper([&] {
    std::string out;
    while (!stop.load()) {
      out.clear();
      r.RenderTo(out);
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        c.With({std::to_string(t % 2)}).Inc();
        h.With({}).Observe(i % 2 ? 1.0 : 0.25);
        g.With({}).Add(1);
        g.With({}).Add(-1);
      }
    });
  }
  for (auto& t : threads) t.join();
  stop.store(true);
  scraper.join();
  EXPECT_EQ(c.With({"0"}).value() + c.With({"1"}).value(), 40000u);
  EXPECT_EQ(h.With({}).count(), 40000u);
  EXPECT_EQ(h.With({}).sum(), 20000 * 1.0 + 20000 * 0.25);
  EXPECT_EQ(g.With({}).value(), 0);
  EXPECT_THAT(r.Render(), HasSubstr("kbus_many_seconds_bucket{le=\"0.5\"} 20000\n"));
  EXPECT_THAT(r.Render(), Not(HasSubstr("NaN")));
}

TEST(Metrics, OffersDurationBucketsInSecondsThatAreValidBounds) {
  Registry r;
  EXPECT_EQ(InvalidArgument([&] {
              r.AddHistogram("kbus_d_seconds", "h", {}, kbus::metrics::DurationBuckets());
              r.AddHistogram("kbus_l_seconds", "h", {}, kbus::metrics::LongDurationBuckets());
            }),
            "");
  EXPECT_EQ(kbus::metrics::DurationBuckets().front(), 0.001);
  EXPECT_EQ(kbus::metrics::LongDurationBuckets().back(), 10800);
}

TEST(Metrics, ContentTypeIsTheTextFormatVersion004) {
  EXPECT_THAT(std::string(kbus::metrics::kContentType), ::testing::StartsWith("text/plain; version=0.0.4"));
}

}  // namespace
