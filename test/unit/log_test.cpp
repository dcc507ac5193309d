#include "kbus/log.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <thread>
#include <vector>

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

// Everything the JSON sink wrote to a pipe while `log` ran.
template <class Body>
std::string Captured(Body log) {
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  kbus::SetLogSink(kbus::MakeJsonLogSink(fds[1]));
  kbus::SetLogLevel(kbus::LogLevel::kInfo);
  std::string out;
  std::thread reader([&] {  // lines longer than the pipe's buffer must not block the logger
    char buf[4096];
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  });
  log();
  kbus::SetLogSink(nullptr);
  close(fds[1]);
  reader.join();
  close(fds[0]);
  return out;
}

TEST(Log, BoundsEveryStringValueAndMarksTheCut) {
  const std::string huge_type(307200, 't');  // a 300 KB kbus-type header
  const std::string out = Captured([&] {
    kbus::Log(kbus::LogLevel::kWarn, "dead-lettering record",
              {{"type", huge_type}, {"error", "no handler for type '" + huge_type + "'"}, {"offset", 7}});
  });
  ASSERT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out.size();
  EXPECT_LT(out.size(), 2 * kbus::kMaxLogValueBytes + 200) << "the line grows with the input";
  kbus::JsonDocument doc;
  ASSERT_TRUE(doc.Parse(out).ok()) << out;
  const std::string type(doc.Root().Find("type")->GetString());
  EXPECT_EQ(type, std::string(kbus::kMaxLogValueBytes, 't') + "\xe2\x80\xa6(truncated, 307200 bytes)");
  EXPECT_EQ(doc.Root().Find("offset")->GetInt64(), 7);
  const std::string at_limit = Captured([&] {
    kbus::Log(kbus::LogLevel::kWarn, "m", {{"v", std::string(kbus::kMaxLogValueBytes, 'v')}});
  });
  EXPECT_EQ(at_limit.find("truncated"), std::string::npos) << "a value at the limit is kept whole";
}

TEST(Log, MakesValuesValidUtf8SoEveryLineIsJson) {
  const std::string out = Captured([] {
    kbus::Log(kbus::LogLevel::kWarn, "bad \xff message",
              {{"type", "it.\xc3\x28Work"}, {"id", std::string("\xed\xa0\x80\x01", 4)}});
  });
  kbus::JsonDocument doc;
  ASSERT_TRUE(doc.Parse(out).ok()) << out;
  EXPECT_EQ(doc.Root().Find("msg")->GetString(), "bad \xef\xbf\xbd message");
  EXPECT_EQ(doc.Root().Find("type")->GetString(), "it.\xef\xbf\xbd(Work");
  EXPECT_EQ(doc.Root().Find("id")->GetString(), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\x01");
}

// A sink of the application's own sees the same bounded, valid values.
class Recording final : public kbus::LogSink {
 public:
  void Write(kbus::LogLevel, std::string_view message, std::span<const kbus::LogField> fields) override {
    sizes.push_back(message.size());
    for (const auto& f : fields) {
      if (const auto* s = std::get_if<std::string_view>(&f.value)) {
        sizes.push_back(s->size());
        all_valid = all_valid && kbus::IsValidUtf8(*s);
      }
    }
  }
  std::vector<std::size_t> sizes;
  bool all_valid = true;
};

TEST(Log, AnyInstalledSinkGetsBoundedValidValues) {
  auto sink = std::make_shared<Recording>();
  kbus::SetLogSink(sink);
  kbus::SetLogLevel(kbus::LogLevel::kInfo);
  kbus::Log(kbus::LogLevel::kError, std::string(5000, 'm'),
            {{"a", std::string(300000, 'a')}, {"b", "\xff"}, {"c", "short"}});
  kbus::SetLogSink(nullptr);
  ASSERT_EQ(sink->sizes.size(), 4u);
  for (std::size_t size : sink->sizes) EXPECT_LE(size, kbus::kMaxLogValueBytes + 64);
  EXPECT_EQ(sink->sizes[3], 5u);
  EXPECT_TRUE(sink->all_valid);
}

TEST(Log, ParsesLevelNames) {
  kbus::LogLevel l;
  EXPECT_TRUE(kbus::ParseLogLevel("error", l));
  EXPECT_EQ(l, kbus::LogLevel::kError);
  EXPECT_FALSE(kbus::ParseLogLevel("loud", l));
}

}  // namespace
