// Progress formats without a child process: the ffmpeg reader on output captured from ffmpeg 5.1
// (`-progress pipe:1 -nostats`), cut anywhere, and on garbage; the allow-list's `.progress`
// lines.

#include "kbus/handlers/progress.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "kbus/handlers/process.hpp"
#include "kbus/testing/matchers.hpp"

namespace {

using kbus::handlers::AllowList;
using kbus::handlers::Progress;
using kbus::handlers::ProgressFormat;
using kbus::handlers::ProgressReader;
using kbus::testing::ErrorIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// What ffmpeg writes on stderr before it encodes: input #0 with its duration (4 s), then the
// output.
constexpr std::string_view kStderrHead =
    "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:in.mp4':\n"
    "  Metadata:\n"
    "    major_brand     : isom\n"
    "    encoder         : Lavf59.27.100\n"
    "  Duration: 00:00:04.00, start: 0.000000, bitrate: 42 kb/s\n"
    "  Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p(progressive), 320x240, 25 fps\n"
    "Stream mapping:\n"
    "  Stream #0:0 -> #0:0 (h264 (native) -> h264 (libx264))\n"
    "Output #0, mp4, to 'file:out.mp4':\n";

// One -progress block at `out_us` microseconds, ended by progress=`state`.
std::string Block(long long out_us, std::string_view state = "continue", std::string_view speed = "1.02x") {
  char clock[64];
  const long long s = out_us / 1000000;
  std::snprintf(clock, sizeof clock, "%02lld:%02lld:%02lld.%06lld", s / 3600, s / 60 % 60, s % 60, out_us % 1000000);
  return "frame=50\nfps=25.00\nstream_0_0_q=28.0\nbitrate=  34.2kbits/s\ntotal_size=16583\nout_time_us=" +
         std::to_string(out_us) + "\nout_time_ms=" + std::to_string(out_us) + "\nout_time=" + clock +
         "\ndup_frames=0\ndrop_frames=0\nspeed=" + std::string(speed) + "\nprogress=" + std::string(state) + "\n";
}

// Feeds stdout text line by line, as RunProcess does; returns what was reported.
std::vector<Progress> Feed(ProgressReader& reader, std::string_view stdout_text) {
  std::vector<Progress> out;
  while (!stdout_text.empty()) {
    const auto nl = stdout_text.find('\n');
    if (auto p = reader.StdoutLine(stdout_text.substr(0, nl))) out.push_back(*p);
    stdout_text = nl == std::string_view::npos ? std::string_view() : stdout_text.substr(nl + 1);
  }
  return out;
}

std::vector<int> Percents(const std::vector<Progress>& reports) {
  std::vector<int> out;
  for (const auto& p : reports) out.push_back(p.percent);
  return out;
}

TEST(FfmpegProgress, ReportsOutTimeOverTheInputsDurationAndEndsAtAHundred) {
  ProgressReader reader(ProgressFormat::kFfmpeg);
  reader.Stderr(kStderrHead);
  EXPECT_EQ(reader.duration(), std::chrono::seconds(4));
  const auto reports = Feed(reader, Block(0) + Block(1000000) + Block(2500000, "continue", "   0x") +
                                        Block(3880078, "end", "35.9x"));
  EXPECT_THAT(Percents(reports), ElementsAre(0, 25, 62, 100));
  EXPECT_EQ(reports[1].message, "00:00:01 of 00:00:04 at 1.02x");
  EXPECT_EQ(reports[2].message, "00:00:02 of 00:00:04") << "a speed of 0x is not shown";
  EXPECT_EQ(reports[3].message, "done");
}

TEST(FfmpegProgress, FindsTheDurationWhereverStderrIsCut) {
  ProgressReader reader(ProgressFormat::kFfmpeg);
  for (char c : kStderrHead) reader.Stderr(std::string_view(&c, 1));
  EXPECT_EQ(reader.duration(), std::chrono::seconds(4));
  // Long inputs: hours of any width, and a fraction of any length up to nanoseconds.
  ProgressReader hours(ProgressFormat::kFfmpeg);
  hours.Stderr("  Duration: 123:04:05.5, start: 0.000000\r\n");
  EXPECT_EQ(hours.duration(), std::chrono::microseconds(((123LL * 60 + 4) * 60 + 5) * 1000000 + 500000));
}

TEST(FfmpegProgress, PercentsOnlyRiseAndStayBelowAHundredUntilTheEnd) {
  ProgressReader reader(ProgressFormat::kFfmpeg);
  reader.Stderr(kStderrHead);
  const auto reports = Feed(reader, Block(-23220) + Block(0) + Block(2000000) + Block(1000000) + Block(2010000) +
                                        Block(9000000) + Block(9500000) + Block(4000000, "end") + Block(4000000, "end"));
  // -23 ms (before the first frame) is 0 %; 1 s after 2 s, and 2.01 s (still 50 %), report
  // nothing; past the input's duration is 99 % until ffmpeg says it ended; a second end is
  // nothing.
  EXPECT_THAT(Percents(reports), ElementsAre(0, 50, 99, 100));
}

TEST(FfmpegProgress, AnOldFfmpegWithOnlyOutTimeMsOrOutTimeIsRead) {
  ProgressReader ms(ProgressFormat::kFfmpeg);
  ms.Stderr(kStderrHead);
  EXPECT_THAT(Percents(Feed(ms, "out_time_ms=1000000\nprogress=continue\n")), ElementsAre(25));
  ProgressReader clock(ProgressFormat::kFfmpeg);
  clock.Stderr(kStderrHead);
  EXPECT_THAT(Percents(Feed(clock, "out_time=00:00:03.000000\nprogress=continue\nout_time=N/A\nprogress=continue\n")),
              ElementsAre(75));
}

TEST(FfmpegProgress, AnInputOfUnknownDurationGivesNoPercentAndBreaksNothing) {
  // A live stream: "Duration: N/A". Then a later duration (of another input) does not count.
  ProgressReader live(ProgressFormat::kFfmpeg);
  live.Stderr("Input #0, flv, from 'rtmp://example/live':\n  Duration: N/A, start: 0.000000, bitrate: N/A\n"
              "Input #1, mov, from 'file:b.mp4':\n  Duration: 00:00:04.00, start: 0.000000\n");
  EXPECT_EQ(live.duration().count(), 0);
  EXPECT_TRUE(Feed(live, Block(1000000) + Block(2000000, "end")).empty());
  // -loglevel error: no Duration line at all.
  ProgressReader quiet(ProgressFormat::kFfmpeg);
  EXPECT_TRUE(Feed(quiet, "out_time_us=N/A\nprogress=continue\n" + Block(2000000, "end")).empty());
  // A duration of zero cannot divide anything.
  ProgressReader zero(ProgressFormat::kFfmpeg);
  zero.Stderr("  Duration: 00:00:00.00, start: 0.000000\n");
  EXPECT_TRUE(Feed(zero, Block(0) + Block(0, "end")).empty());
}

TEST(FfmpegProgress, ADurationThatIsNotOneIsUnknown) {
  for (const char* line : {"  Duration: 00:61:00.00, start: 0\n", "  Duration: 1:2:3, start: 0\n",
                           "  Duration: 00:00:04.00x, start: 0\n", "  Duration: 9999999999:00:00.00\n",
                           "  Duration: -00:00:04.00\n", "  Duration: 00:00:04.0000000000\n", "  Duration:\n"}) {
    ProgressReader reader(ProgressFormat::kFfmpeg);
    reader.Stderr(line);
    EXPECT_EQ(reader.duration().count(), 0) << line;
    EXPECT_TRUE(Feed(reader, Block(1000000) + Block(2000000, "end")).empty()) << line;
  }
  // Not the Duration line: in the middle of another line, or on a line longer than any
  // Duration line, where the bytes after it are dropped rather than kept.
  ProgressReader reader(ProgressFormat::kFfmpeg);
  reader.Stderr("    comment         : Duration: 00:00:01.00\n" + std::string(100000, 'x') +
                "Duration: 00:00:01.00\n");
  EXPECT_EQ(reader.duration().count(), 0);
  reader.Stderr(kStderrHead);
  EXPECT_EQ(reader.duration(), std::chrono::seconds(4));
}

TEST(FfmpegProgress, GarbageOnStdoutIsIgnored) {
  ProgressReader reader(ProgressFormat::kFfmpeg);
  reader.Stderr(kStderrHead);
  const auto reports = Feed(reader,
                            "progress: 50 a kbus line\n"
                            "out_time_us=99999999999999999999999999\nprogress=continue\n"  // overflows
                            "out_time_us=12x\nout_time_us=\nout_time_us=--5\nprogress=continue\n"
                            "out_time=1:00\nout_time=00:00:99.0\nprogress=continue\n"
                            "=\n==\nout_time_us\n\xff\xfe=\x01\nspeed=\x1b[31m9x\nprogress=\n"
                            "out_time_us=1000000\nspeed=" + std::string(100, '9') + "x\nprogress=whatever\n");
  // Only the last block has a time; its odd progress value counts as "continue", its overlong
  // speed is not shown.
  ASSERT_THAT(Percents(reports), ElementsAre(25));
  EXPECT_EQ(reports[0].message, "00:00:01 of 00:00:04");
}

TEST(FfmpegProgress, RandomOutputNeverYieldsAPercentOutOfRangeOrOutOfOrder) {
  std::mt19937 random(20240611);
  const std::vector<std::string> words = {"out_time_us=", "out_time_ms=", "out_time=", "progress=", "continue",
                                          "end", "speed=", "N/A", "-", "00:", "1", "99999", ".", "x", "=", " ",
                                          "Duration: ", ", ", "\r", "\n"};
  for (int run = 0; run < 200; ++run) {
    ProgressReader reader(ProgressFormat::kFfmpeg);
    std::string err, out;
    for (int i = 0; i < 200; ++i) err += words[random() % words.size()];
    for (int i = 0; i < 2000; ++i) {
      if (random() % 8 == 0) {
        out.push_back(static_cast<char>(random() % 256));
      } else {
        out += words[random() % words.size()];
      }
    }
    reader.Stderr(err);
    int last = -1;
    bool ended = false;
    for (const auto& p : Feed(reader, out)) {
      ASSERT_FALSE(ended) << "nothing after 100";
      ASSERT_GE(p.percent, 0);
      ASSERT_LE(p.percent, 100);
      ASSERT_GT(p.percent, last);
      last = p.percent;
      ended = p.percent == 100;
    }
  }
}

TEST(FfmpegProgress, AChildFloodingBothPipesWithRandomBytesNeitherBlocksNorFakesProgress) {
  // /bin/sh is the test's own program here (the launcher never adds a shell): 20 MB of random
  // bytes to each pipe between the duration and the last blocks.
  kbus::handlers::ProcessSpec spec;
  spec.path = "/bin/sh";
  spec.args = {"-c",
               "printf '  Duration: 00:00:04.00, start: 0.000000\\n' >&2; head -c 20000000 /dev/urandom; "
               "head -c 20000000 /dev/urandom >&2; printf '\\nout_time_us=2000000\\nprogress=continue\\n"
               "progress=end\\n'"};
  spec.env = {{"PATH", "/usr/bin:/bin"}};
  spec.run_timeout = std::chrono::seconds(60);
  spec.progress = ProgressFormat::kFfmpeg;
  std::vector<int> percents;
  kbus::handlers::ProcessObserver observer;
  observer.progress = [&](const Progress& p) { percents.push_back(p.percent); };
  const auto r = kbus::handlers::RunProcess(spec, observer);
  EXPECT_EQ(r.outcome, kbus::handlers::ProcessOutcome::kSucceeded) << r.error;
  EXPECT_EQ(r.stderr_tail.size(), 4096u);
  EXPECT_THAT(percents, ElementsAre(50, 100)) << "only the blocks after the flood";
}

TEST(FfmpegProgress, TheKbusFormatReadsProgressLinesAndIgnoresStderr) {
  ProgressReader reader;  // kbus
  reader.Stderr(kStderrHead);
  EXPECT_EQ(reader.duration().count(), 0);
  const auto reports = Feed(reader, "progress: 10 one\n" + Block(1000000) + "progress: 5 back\n");
  EXPECT_THAT(Percents(reports), ElementsAre(10, 5)) << "the kbus format reports what the child says";
}

TEST(FfmpegProgress, FormatsAreNamedAsTheAllowListWritesThem) {
  EXPECT_EQ(kbus::handlers::ProgressFormatNamed("ffmpeg"), ProgressFormat::kFfmpeg);
  EXPECT_EQ(kbus::handlers::ProgressFormatNamed("kbus"), ProgressFormat::kKbus);
  EXPECT_EQ(kbus::handlers::ProgressFormatNamed("FFmpeg"), std::nullopt);
  EXPECT_EQ(kbus::handlers::ProgressFormatName(ProgressFormat::kFfmpeg), "ffmpeg");
  EXPECT_EQ(kbus::handlers::ProgressFormatName(ProgressFormat::kKbus), "kbus");
}

TEST(AllowList, AProgressLineNamesTheFormatOfItsProgram) {
  auto allow = AllowList::Parse(
      "ffmpeg = /usr/bin/ffmpeg -hide_banner -nostdin -y -nostats -progress pipe:1\n"
      "ffmpeg.progress = ffmpeg   # key=value blocks on stdout\n"
      "ffmpeg.env = LANG\n"
      "fake = /bin/fake\n");
  ASSERT_TRUE(allow.ok()) << allow.error().ToString();
  auto spec = allow->Resolve("ffmpeg", {"-i", "file:a.mp4", "file:b.mp4"}, {{"LANG", "C"}});
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->progress, ProgressFormat::kFfmpeg);
  EXPECT_THAT(spec->args, ElementsAre("-hide_banner", "-nostdin", "-y", "-nostats", "-progress", "pipe:1", "-i",
                                      "file:a.mp4", "file:b.mp4"));
  EXPECT_EQ(allow->Resolve("fake", {}, {})->progress, ProgressFormat::kKbus) << "the default";
}

TEST(AllowList, RefusesABadProgressLineNamingIt) {
  const std::string program = "ffmpeg = /usr/bin/ffmpeg\n";
  for (const auto& [text, error] : std::vector<std::pair<std::string, std::string>>{
           {"ffmpeg.progress = ffmpeg\n" + program, "line 1: 'ffmpeg.progress' before the program 'ffmpeg'"},
           {program + "ffmpeg.progress = mencoder\n", "line 2: 'ffmpeg.progress' must be one of kbus, ffmpeg"},
           {program + "ffmpeg.progress = ffmpeg kbus\n", "line 2: 'ffmpeg.progress' must be one of kbus, ffmpeg"},
           {program + "ffmpeg.progress =\n", "line 2: 'ffmpeg.progress' must be one of kbus, ffmpeg"},
           {program + "ffmpeg.progress = ffmpeg\nffmpeg.progress = kbus\n",
            "line 3: 'ffmpeg.progress' is given twice"}}) {
    EXPECT_THAT(AllowList::Parse(text), ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr(error))) << text;
  }
}

}  // namespace
