// kbus's exposition of every kind of family, held to what Prometheus accepts: Debian's
// `promtool check metrics` must parse it and find no lint problem.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "kbus/metrics.hpp"
#include "promtool.hpp"

namespace {

TEST(Promtool, AcceptsARegistryWithEveryKindOfFamilyWithoutLintProblems) {
  kbus::metrics::Registry r;
  r.AddCounter("kbus_commits_total", "Offset commits.");
  auto& handled = r.AddCounter("kbus_records_handled_total", "Records handled, by type and outcome.",
                               {"type", "outcome"});
  handled.With({"shop.PlaceOrder", "ack"}).Inc(12);
  handled.With({"shop.PlaceOrder", "dead_letter"}).Inc();
  // Values that need escaping, and bytes that are not UTF-8.
  auto& dead = r.AddCounter("kbus_dead_letters_total", "Records dead-lettered, by \"reason\".\nSee docs\\operations.md.",
                            {"reason"});
  dead.With({"decode: field \"quantity\"\\n\nnext line"}).Inc();
  dead.With({"bad \xff\xfe bytes"}).Inc(2);
  r.AddCounter("kbus_retries_total", "Retries, by type.", {"type"});  // no series yet
  auto& lag = r.AddGauge("kbus_consumer_lag_records", "Records behind the high watermark.", {"topic", "partition"});
  lag.With({"shop.commands", "0"}).Set(0);
  lag.With({"shop.commands", "1"}).Set(1234567);
  lag.With({"shop.commands", "2"}).Set(std::nan(""));
  lag.With({"shop.commands", "3"}).Set(std::numeric_limits<double>::infinity());
  r.AddGauge("kbus_handler_runs_in_flight", "Handler runs in flight.").With({}).Set(3);
  auto& runs = r.AddHistogram("kbus_handler_duration_seconds", "Handler run time.", {"type"},
                              kbus::metrics::DurationBuckets());
  for (double v : {0.0004, 0.003, 0.2, 7.0, 1000.0}) runs.With({"shop.PlaceOrder"}).Observe(v);
  runs.With({"shop.ChargeCard"});
  auto& processes = r.AddHistogram("kbus_launcher_process_duration_seconds", "Launched process run time.", {},
                                   kbus::metrics::LongDurationBuckets());
  processes.With({}).Observe(42);

  const std::string exposition = r.Render();
  const kbus::test::PromtoolResult check = kbus::test::CheckMetrics(exposition);
  EXPECT_EQ(check.exit_code, 0) << check.output << "\n--- exposition ---\n" << exposition;
  EXPECT_EQ(check.output, "") << exposition;
}

// The check itself: a wrong exposition must fail, or the test above proves nothing.
TEST(Promtool, RefusesWhatPrometheusRefuses) {
  const auto lint = kbus::test::CheckMetrics("# HELP kbus_x h\n# TYPE kbus_x counter\nkbus_x 1\n");
  EXPECT_NE(lint.exit_code, 0);
  EXPECT_THAT(lint.output, ::testing::HasSubstr("_total"));
  const auto parse = kbus::test::CheckMetrics("kbus_y{a=\"\xff\"} 1\n");
  EXPECT_NE(parse.exit_code, 0);
  EXPECT_THAT(parse.output, ::testing::HasSubstr("invalid label value"));
}

}  // namespace
