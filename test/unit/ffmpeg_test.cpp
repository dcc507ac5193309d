// The launcher's process backend running the real ffmpeg through the allow-list entry compose
// uses (docker/launcher.allow): its progress arrives as rising percents that end at 100, the
// output has the height asked (ffprobe), a corrupt input fails with ffmpeg's own message in
// the stderr tail, and an input of unknown duration encodes without a percent.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "kbus/handlers/process.hpp"
#include "media.hpp"

namespace {

using kbus::handlers::AllowList;
using kbus::handlers::ProcessOutcome;
using kbus::handlers::ProcessResult;
using kbus::test::MediaDir;
using ::testing::AllOf;
using ::testing::Each;
using ::testing::Ge;
using ::testing::HasSubstr;
using ::testing::Le;

AllowList ComposeAllowList() {
  std::ifstream in(LAUNCHER_ALLOW_PATH);
  std::stringstream text;
  text << in.rdbuf();
  auto allow = AllowList::Parse(text.str());
  if (!allow.ok()) throw std::runtime_error(allow.error().ToString());
  return std::move(*allow);
}

struct Encode {
  ProcessResult result;
  std::vector<int> percents;
  std::vector<std::string> messages;
};

// Runs the allow-list's ffmpeg with `args` after its fixed ones, as the launcher would.
Encode Ffmpeg(std::vector<std::string> args) {
  auto spec = ComposeAllowList().Resolve("ffmpeg", args, {});
  if (!spec.ok()) throw std::runtime_error(spec.error().ToString());
  spec->run_timeout = std::chrono::minutes(1);
  Encode run;
  kbus::handlers::ProcessObserver observer;
  observer.progress = [&](const kbus::handlers::Progress& p) {
    run.percents.push_back(p.percent);
    run.messages.push_back(p.message);
  };
  run.result = kbus::handlers::RunProcess(*spec, observer);
  return run;
}

TEST(FfmpegEncode, ProgressRisesToAHundredAndTheOutputHasTheHeightAsked) {
  MediaDir dir("ffmpeg");
  kbus::test::MakeTestVideo(dir / "in.mp4", 4);
  // -re reads the input in real time, so that the 4 s take 4 s and ffmpeg writes a progress
  // block every half second, as it would for a long input.
  const Encode run = Ffmpeg({"-re", "-i", "file:" + (dir / "in.mp4"), "-vf", "scale=-2:120", "-c:v", "libx264",
                          "-pix_fmt", "yuv420p", "file:" + (dir / "out.mp4")});
  ASSERT_EQ(run.result.outcome, ProcessOutcome::kSucceeded) << run.result.stderr_tail;
  // ffmpeg writes a block every 0.5 s; its output time lags the input by the encoder's
  // lookahead (1.6 s for libx264's defaults at 25 fps), so the last ones come close together:
  // here 0 12 24 37 50 100, or 0 12 25 37 100.
  ASSERT_GE(run.percents.size(), 3u);
  EXPECT_TRUE(std::any_of(run.percents.begin(), run.percents.end(), [](int p) { return p > 0 && p < 100; }));
  EXPECT_THAT(run.percents, Each(AllOf(Ge(0), Le(100))));
  EXPECT_TRUE(std::is_sorted(run.percents.begin(), run.percents.end()) &&
              std::adjacent_find(run.percents.begin(), run.percents.end()) == run.percents.end())
      << "strictly rising";
  EXPECT_EQ(run.percents.back(), 100);
  EXPECT_EQ(run.messages.back(), "done");
  EXPECT_THAT(run.messages.front(), HasSubstr(" of 00:00:04"));
  EXPECT_EQ(kbus::test::ProbeHeight(dir / "out.mp4"), 120);
  std::string seen;
  for (int p : run.percents) seen += " " + std::to_string(p);
  std::printf("4 s input encoded in real time in %lld ms, progress:%s\n",
              static_cast<long long>(run.result.duration.count()), seen.c_str());
}

TEST(FfmpegEncode, ACorruptInputFailsWithFfmpegsMessageInTheStderrTail) {
  MediaDir dir("ffmpeg-bad");
  kbus::test::MakeCorruptVideo(dir / "random.mp4");
  // A video cut short: its index (MP4's moov box, at the end) is gone.
  kbus::test::MakeTestVideo(dir / "whole.mp4", 4);
  std::filesystem::resize_file(dir / "whole.mp4", std::filesystem::file_size(dir / "whole.mp4") / 2);
  for (const auto& [name, message] : {std::pair<std::string, std::string>{"random.mp4", "Invalid data found when processing input"},
                                      {"whole.mp4", "moov atom not found"}}) {
    const Encode run = Ffmpeg({"-i", "file:" + (dir / name), "-vf", "scale=-2:120", "file:" + (dir / "out.mp4")});
    EXPECT_EQ(run.result.outcome, ProcessOutcome::kFailed) << name;
    EXPECT_EQ(run.result.exit_code, 1) << name;
    EXPECT_THAT(run.result.stderr_tail, HasSubstr(message)) << name;
    EXPECT_THAT(run.result.stderr_tail, HasSubstr("file:" + (dir / name))) << name;
    EXPECT_TRUE(run.percents.empty()) << name;
  }
}

TEST(FfmpegEncode, AnInputOfUnknownDurationEncodesWithoutAPercent) {
  // A generated source has no duration ("Duration: N/A"), like a live stream.
  MediaDir dir("ffmpeg-live");
  const Encode run = Ffmpeg({"-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "1", "-vf", "scale=-2:60",
                          "file:" + (dir / "out.mp4")});
  ASSERT_EQ(run.result.outcome, ProcessOutcome::kSucceeded) << run.result.stderr_tail;
  EXPECT_TRUE(run.percents.empty());
  EXPECT_GE(run.result.stdout_lines, 12u) << "the blocks came, and were read";
  EXPECT_EQ(kbus::test::ProbeHeight(dir / "out.mp4"), 60);
}

}  // namespace
