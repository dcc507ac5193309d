// kbus::cli without a broker: values and flags as kbus's programs parse them. The programs
// themselves (flags, KBUS_* variables, exit codes) are tested as processes in test/cli/.
#include "kbus/cli/options.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "kbus/testing/matchers.hpp"

namespace {

namespace po = boost::program_options;
using kbus::ErrorCode;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using ::testing::HasSubstr;

TEST(CliOptions, AnOptionsVariableIsKbusAndItsNameInCapitalsWithUnderscores) {
  EXPECT_EQ(kbus::cli::EnvVarName("max-deliveries"), "KBUS_MAX_DELIVERIES");
}

TEST(CliOptions, ADelayTakesANumberAndAUnit) {
  EXPECT_EQ(*kbus::cli::ParseDelay("500ms", "--d"), std::chrono::milliseconds(500));
  EXPECT_EQ(*kbus::cli::ParseDelay("10s", "--d"), std::chrono::seconds(10));
  EXPECT_EQ(*kbus::cli::ParseDelay("5m", "--d"), std::chrono::minutes(5));
  EXPECT_EQ(*kbus::cli::ParseDelay("1h", "--d"), std::chrono::hours(1));
  EXPECT_EQ(*kbus::cli::ParseDelay("2d", "--d"), std::chrono::hours(48));
  for (const char* bad : {"10", "s", "0s", "-1s", "10 s", "1w"}) {
    EXPECT_THAT(kbus::cli::ParseDelay(bad, "--retry-tier"),
                ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--retry-tier")))
        << bad;
  }
}

TEST(CliOptions, ATimeIsISO8601WithItsOffset) {
  using namespace std::chrono;
  const auto xmas = sys_days(year(2026) / 12 / 24) + hours(18);
  EXPECT_EQ(*kbus::cli::ParseTime("2026-12-24T18:00:00Z", "--at"), xmas);
  EXPECT_EQ(*kbus::cli::ParseTime("2026-12-24T19:00:00+01:00", "--at"), xmas);
  EXPECT_EQ(*kbus::cli::ParseTime("2026-12-24T13:30-04:30", "--at"), xmas);
  EXPECT_EQ(*kbus::cli::ParseTime("2026-12-24 18:00:00.25Z", "--at"), xmas + milliseconds(250));
  for (const char* bad : {"2026-12-24T18:00:00", "2026-02-30T00:00:00Z", "2026-12-24T24:00:00Z", "tomorrow",
                          "2026-12-24T18:00:00Z junk", "2026-12-24T18:00:00+1"}) {
    EXPECT_THAT(kbus::cli::ParseTime(bad, "--at"), ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--at"))) << bad;
  }
}

TEST(CliOptions, AKeyValueSplitsAtTheFirstEqualsSignAndNeedsAKey) {
  auto h = kbus::cli::ParseKeyValue("a=b=c", "--header");
  ASSERT_THAT(h, IsOk());
  EXPECT_EQ(h->name, "a");
  EXPECT_EQ(h->value, "b=c");
  EXPECT_EQ(kbus::cli::ParseKeyValue("a=", "--header")->value, "");
  EXPECT_THAT(kbus::cli::ParseKeyValue("=b", "--header"),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("key")));
  EXPECT_THAT(kbus::cli::ParseKeyValue("ab", "--header"), ErrorIs(ErrorCode::kInvalidArgument));
}

TEST(CliOptions, ALaterPropertyOfTheSameKeyWins) {
  auto p = kbus::cli::ParseProperties({"linger.ms=1", "acks=all", "linger.ms=7"}, "-X");
  ASSERT_THAT(p, IsOk());
  EXPECT_EQ(p->at("linger.ms"), "7");
  EXPECT_EQ(p->at("acks"), "all");
}

TEST(CliOptions, ATopicSpecIsANameAndOptionallyAPositivePartitionCount) {
  auto plain = kbus::cli::ParseTopicSpec("orders", "--topic", 3);
  ASSERT_THAT(plain, IsOk());
  EXPECT_EQ(plain->name, "orders");
  EXPECT_EQ(plain->partitions, 3);
  EXPECT_EQ(kbus::cli::ParseTopicSpec("orders:12", "--topic", 3)->partitions, 12);
  for (const char* bad : {"", ":4", "orders:", "orders:0", "orders:x", "orders:4x"}) {
    EXPECT_THAT(kbus::cli::ParseTopicSpec(bad, "--topic", 3), ErrorIs(ErrorCode::kInvalidArgument))
        << bad;
  }
}

TEST(CliOptions, SecretPropertyValuesAreMaskedWhereverAMessageQuotesThem) {
  const std::map<std::string, std::string> properties = {{"sasl.password", "hunter2"},
                                                         {"client.id", "visible"}};
  EXPECT_EQ(kbus::cli::MaskSecrets("bad hunter2 for visible", properties), "bad *** for visible");
}

TEST(CliOptions, AnOptionComesFromItsVariableUnlessTheCommandLineGivesIt) {
  kbus::cli::ClientOptions options;
  po::options_description desc("test options");
  kbus::cli::AddClientOptions(desc, options);
  ASSERT_EQ(::setenv("KBUS_BROKERS", "from-env:9092", 1), 0);
  ASSERT_EQ(::setenv("KBUS_PROPERTY", "acks=all\nlinger.ms=5", 1), 0);

  auto from_env = kbus::cli::ParseArgs({}, desc);
  ASSERT_THAT(from_env, IsOk());
  EXPECT_EQ(options.brokers, "from-env:9092");
  EXPECT_EQ(options.properties, (std::vector<std::string>{"acks=all", "linger.ms=5"}));
  EXPECT_EQ(from_env->Spelling("brokers"), "KBUS_BROKERS");

  options = {};
  auto from_flag = kbus::cli::ParseArgs({"--brokers", "from-flag:9092"}, desc);
  ASSERT_THAT(from_flag, IsOk());
  EXPECT_EQ(options.brokers, "from-flag:9092");
  EXPECT_EQ(from_flag->Spelling("brokers"), "--brokers");
  ::unsetenv("KBUS_BROKERS");
  ::unsetenv("KBUS_PROPERTY");
}

TEST(CliOptions, AnUnknownOrAbbreviatedFlagIsAUsageError) {
  kbus::cli::ClientOptions options;
  po::options_description desc("test options");
  kbus::cli::AddClientOptions(desc, options);
  EXPECT_THAT(kbus::cli::ParseArgs({"--nope"}, desc), ErrorIs(ErrorCode::kInvalidArgument));
  EXPECT_THAT(kbus::cli::ParseArgs({"--broker", "x:1"}, desc), ErrorIs(ErrorCode::kInvalidArgument));
}

TEST(CliOptions, WorkerOptionsFillTheWorkerConfigAndNameTheFlagTheyRefuse) {
  kbus::kafka::WorkerConfig config;
  kbus::cli::WorkerOptions options;
  po::options_description desc("test options");
  kbus::cli::AddWorkerOptions(desc, options, config);
  auto parsed = kbus::cli::ParseArgs(
      {"--brokers", "b:9092", "--group", "g", "--max-deliveries", "9", "--log-level", "error"}, desc);
  ASSERT_THAT(parsed, IsOk());
  ASSERT_THAT(kbus::cli::ApplyWorkerOptions(options, *parsed, config), IsOk());
  EXPECT_EQ(config.client.brokers, "b:9092");
  EXPECT_EQ(config.group, "g");
  EXPECT_EQ(config.max_deliveries, 9);

  kbus::cli::WorkerOptions bad_options;
  po::options_description bad_desc("test options");
  kbus::cli::AddWorkerOptions(bad_desc, bad_options, kbus::kafka::WorkerConfig{});
  auto bad = kbus::cli::ParseArgs({"--group", "g", "--session-timeout-ms=-1"}, bad_desc);
  ASSERT_THAT(bad, IsOk());
  EXPECT_THAT(kbus::cli::ApplyWorkerOptions(bad_options, *bad, config),
              ErrorIs(ErrorCode::kInvalidArgument, HasSubstr("--session-timeout-ms")));
}

}  // namespace
