#include "kbus/log.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "kbus/json.hpp"

namespace {

TEST(Log, WritesOneJsonObjectPerLineWithEscapedFields) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  kbus::SetLogSink(kbus::MakeJsonLogSink(fds[1]));
  kbus::SetLogLevel(kbus::LogLevel::kInfo);
  kbus::Log(kbus::LogLevel::kDebug, "filtered out");
  kbus::Log(kbus::LogLevel::kWarn, "quote \" newline \n tab \t ctrl \x01",
            {{"topic", "t"}, {"partition", 3}, {"offset", std::int64_t{1} << 40}});
  kbus::SetLogSink(nullptr);
  close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);

  ASSERT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  kbus::JsonDocument doc;
  ASSERT_TRUE(doc.Parse(out).ok()) << out;
  const auto root = doc.Root();
  EXPECT_EQ(root.Find("level")->GetString(), "warn");
  EXPECT_EQ(root.Find("msg")->GetString(), "quote \" newline \n tab \t ctrl \x01");
  EXPECT_EQ(root.Find("topic")->GetString(), "t");
  EXPECT_EQ(root.Find("partition")->GetInt64(), 3);
  EXPECT_EQ(root.Find("offset")->GetInt64(), std::int64_t{1} << 40);
  EXPECT_TRUE(root.Find("ts").has_value());
}

TEST(Log, ParsesLevelNames) {
  kbus::LogLevel l;
  EXPECT_TRUE(kbus::ParseLogLevel("error", l));
  EXPECT_EQ(l, kbus::LogLevel::kError);
  EXPECT_FALSE(kbus::ParseLogLevel("loud", l));
}

}  // namespace
