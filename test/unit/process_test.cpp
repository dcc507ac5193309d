// The launcher's local process backend, with real child processes: argv and environment reach
// the child byte for byte, progress lines are parsed (garbage is not progress), exit codes and
// signals are reported, a timeout or a cancel ends the whole process group, a child writing
// 100 MB does not block, launch failures are reported, and nothing is left as a zombie.

#include "kbus/handlers/process.hpp"

#include "kbus/handlers/launcher.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <limits>
#include <fstream>
#include <sstream>
#include <iterator>
#include <mutex>
#include <thread>

#include "kbus/testing/matchers.hpp"
#include "process_group.hpp"

namespace {

using kbus::handlers::ContainerSpec;
using kbus::handlers::AllowList;
using kbus::handlers::ParseProgressLine;
using kbus::handlers::ProcessControl;
using kbus::handlers::ProcessObserver;
using kbus::handlers::ProcessOutcome;
using kbus::handlers::ProcessSpec;
using kbus::handlers::RunProcess;
using kbus::test::GroupAlive;
using kbus::testing::ErrorIs;
using kbus::testing::IsOk;
using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

ProcessSpec Encoder(std::vector<std::string> args) {
  ProcessSpec spec;
  spec.path = FAKE_ENCODER_PATH;
  spec.args = std::move(args);
  return spec;
}

// No child of this process is left unreaped.
bool NoZombies() {
  int status = 0;
  const pid_t r = ::waitpid(-1, &status, WNOHANG);
  return r == -1 && errno == ECHILD;
}

std::vector<std::string> SplitNul(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == '\0') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  return out;
}

TEST(ProgressLine, ParsesThePercentageAndMessage) {
  auto p = ParseProgressLine("progress: 42 encoding pass 1");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->percent, 42);
  EXPECT_EQ(p->message, "encoding pass 1");
  p = ParseProgressLine("  progress:100\r");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->percent, 100);
  EXPECT_EQ(p->message, "");
  EXPECT_EQ(ParseProgressLine("progress: 0 start")->percent, 0);
}

TEST(ProgressLine, GarbageIsNotProgress) {
  for (const char* line : {"", "progress", "progress:", "progress: -1 x", "progress: 101 x", "progress: 42x",
                           "progress: abc", "Progress: 42", "frame=  42 fps=30", "progress: 99999999999 x",
                           "\x01\xff progress: 5", "progress: 4 2 \xff\xfe"}) {
    const auto p = ParseProgressLine(line);
    if (std::string_view(line) == "progress: 4 2 \xff\xfe") {
      ASSERT_TRUE(p.has_value());  // any bytes may follow in the message
      EXPECT_EQ(p->percent, 4);
      continue;
    }
    EXPECT_FALSE(p.has_value()) << line;
  }
}

TEST(AllowList, ResolvesNamesToTheirPathFixedArgsAndAllowedEnvironment) {
  auto list = AllowList::Parse(
      "# programs the launcher may run\n"
      "encode-video = /usr/bin/ffmpeg -hide_banner -nostdin   # fixed leading args\n"
      "encode-video.env = LANG TMPDIR\n"
      "\n"
      "true = /bin/true\n");
  ASSERT_THAT(list, IsOk());
  auto spec = list->Resolve("encode-video", {"-i", "in.mp4"}, {{"LANG", "C"}});
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->path, "/usr/bin/ffmpeg");
  EXPECT_THAT(spec->args, ElementsAre("-hide_banner", "-nostdin", "-i", "in.mp4"));
  EXPECT_EQ(spec->env.at("LANG"), "C");
  EXPECT_EQ(spec->argv0, "encode-video");

  EXPECT_THAT(list->Resolve("rm", {"-rf", "/"}, {}),
              ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("'rm' is not in the launcher's allow-list")));
  EXPECT_THAT(list->Resolve("/bin/true", {}, {}), ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("allow-list")));
  EXPECT_THAT(list->Resolve("encode-video", {}, {{"LD_PRELOAD", "/tmp/evil.so"}}),
              ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("'LD_PRELOAD' is not allowed")));
}

TEST(AllowList, RefusesBadLinesNamingThem) {
  EXPECT_THAT(AllowList::Parse("a = /bin/true\nb = relative/path\n"),
              ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("line 2: program 'b' needs an absolute path")));
  EXPECT_THAT(AllowList::Parse("just text\n"), ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("line 1")));
  EXPECT_THAT(AllowList::Parse("x.env = A\n"), ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("before the program")));
  EXPECT_THAT(AllowList::Parse("a = /bin/true\na = /bin/false\n"),
              ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("listed twice")));
}

TEST(AllowList, AContainerEntrySetsImageLimitsAndMountsThatNoCommandCanChange) {
  auto list = AllowList::Parse(
      "encode = /usr/bin/ffmpeg -nostdin\n"
      "encode.image = registry.example/kbus-encoder:1.2\n"
      "encode.cpus = 1.5\n"
      "encode.memory = 512m\n"
      "encode.pids = 64\n"
      "encode.user = 10001:10001\n"
      "encode.read_only = false\n"
      "encode.network = media-net\n"
      "encode.mount = kbus-media:/media:rw\n"
      "encode.mount = /srv/fonts:/fonts\n"
      "encode.tmpfs = /tmp\n"
      "plain = /bin/true\n");
  ASSERT_THAT(list, IsOk());
  auto spec = list->Resolve("encode", {"-i", "in.mp4"}, {});
  ASSERT_THAT(spec, IsOk());
  const ContainerSpec& c = spec->container;
  EXPECT_EQ(c.image, "registry.example/kbus-encoder:1.2");
  EXPECT_DOUBLE_EQ(c.cpus, 1.5);
  EXPECT_EQ(c.memory_bytes, 512 << 20);
  EXPECT_EQ(c.pids, 64);
  EXPECT_EQ(c.user, "10001:10001");
  EXPECT_FALSE(c.read_only);
  EXPECT_EQ(c.network, "media-net");
  EXPECT_THAT(c.mounts, ElementsAre("kbus-media:/media:rw", "/srv/fonts:/fonts:ro")) << "read-only unless it says rw";
  EXPECT_THAT(c.tmpfs, ElementsAre("/tmp"));
  EXPECT_EQ(spec->path, "/usr/bin/ffmpeg") << "the path inside the image";
  EXPECT_THAT(spec->args, ElementsAre("-nostdin", "-i", "in.mp4"));

  const ContainerSpec plain = list->Resolve("plain", {}, {})->container;
  EXPECT_EQ(plain.image, "") << "no image: a child process";
  EXPECT_EQ(plain.network, "none");
  EXPECT_EQ(plain.user, "65534:65534");
  EXPECT_TRUE(plain.read_only);
  EXPECT_EQ(plain.pids, 256);
  EXPECT_EQ(plain.memory_bytes, 0);
}

TEST(AllowList, RefusesBadContainerLinesNamingThem) {
  const std::string program = "job = /job\n";
  for (const auto& [line, error] : std::vector<std::pair<std::string, std::string>>{
           {"job.image =", "line 2: 'job.image' takes one value"},
           {"job.image = a b", "'job.image' takes one value"},
           {"job.cpus = 0", "'job.cpus' must be a number of CPUs above 0"},
           {"job.cpus = lots", "'job.cpus' must be a number"},
           {"job.memory = 1m", "'job.memory' must be a size of at least 6m"},
           {"job.memory = 5x", "'job.memory' must be a size"},
           {"job.pids = 0", "'job.pids' must be a whole number, at least 1"},
           {"job.pids = 10k", "'job.pids' must be a whole number"},
           {"job.user = root", "'job.user' must not be root"},
           {"job.user = 0:0", "'job.user' must not be root"},
           {"job.read_only = yes", "'job.read_only' must be true or false"},
           {"job.mount = /data", "'job.mount' must be SOURCE:TARGET[:ro|rw]"},
           {"job.mount = /data:relative", "'job.mount' must be SOURCE:TARGET[:ro|rw]"},
           {"job.mount = /data:/data:rx", "'job.mount' must be SOURCE:TARGET[:ro|rw]"},
           {"job.tmpfs = tmp", "'job.tmpfs' must be an absolute path"},
           {"job.image = a\njob.image = b", "line 3: 'job.image' is given twice"}}) {
    EXPECT_THAT(AllowList::Parse(program + line + "\n"), ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr(error))) << line;
  }
  EXPECT_THAT(AllowList::Parse("job.image = x\n" + program),
              ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("line 1: 'job.image' before the program 'job'")));
}

TEST(RunProcess, ArgumentsAndEnvironmentReachTheChildByteForByteWithoutAShell) {
  const std::string out = ::testing::TempDir() + "/argv_dump.out";
  std::remove(out.c_str());
  const std::vector<std::string> nasty = {"; rm -rf /", "$(id)", "`id`", "'single' \"double\"", "a\nb",
                                          "*", "", "  spaced  ", "\xff\xfe binary", "--flag=$HOME", "|| true &"};
  ProcessSpec spec;
  spec.path = ARGV_DUMP_PATH;
  spec.args = {out};
  spec.args.insert(spec.args.end(), nasty.begin(), nasty.end());
  spec.env = {{"ONLY", "this $(id) ; value"}};
  ::setenv("KBUS_PARENT_SECRET", "must-not-leak", 1);
  const auto r = RunProcess(spec);
  ASSERT_EQ(r.outcome, ProcessOutcome::kSucceeded) << r.error << r.stderr_tail;
  std::ifstream in(out, std::ios::binary);
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Arguments, then '\n', then the environment: each entry NUL-terminated.
  std::size_t pos = 0;
  std::vector<std::string> got_args;
  for (std::size_t i = 0; i < nasty.size(); ++i) {
    const auto end = data.find('\0', pos);
    ASSERT_NE(end, std::string::npos);
    got_args.push_back(data.substr(pos, end - pos));
    pos = end + 1;
  }
  EXPECT_EQ(got_args, nasty);
  ASSERT_EQ(data[pos], '\n');
  EXPECT_THAT(SplitNul(data.substr(pos + 1)), ElementsAre("ONLY=this $(id) ; value"))
      << "the child saw more than its explicit environment";
  EXPECT_TRUE(NoZombies());
}

TEST(RunProcess, ReportsProgressInOrderAndSucceeds) {
  std::vector<int> percents;
  int started_pid = 0;
  ProcessObserver observer;
  observer.started = [&](int pid, const std::string&, std::chrono::milliseconds) { started_pid = pid; };
  observer.progress = [&](const kbus::handlers::Progress& p) { percents.push_back(p.percent); };
  const auto r = RunProcess(Encoder({"--seconds", "0.2", "--steps", "4", "--stderr", "warming up"}), observer);
  EXPECT_EQ(r.outcome, ProcessOutcome::kSucceeded);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_GT(started_pid, 0);
  EXPECT_THAT(percents, ElementsAre(25, 50, 75, 100));
  EXPECT_EQ(r.stderr_tail, "warming up\n");
  EXPECT_GE(r.duration, milliseconds(150));
  EXPECT_TRUE(NoZombies());
}

TEST(ResultLine, ReadsTheJsonAfterTheWord) {
  using kbus::handlers::ParseResultLine;
  auto r = ParseResultLine(R"(kbus-result {"output":"a.mp4","frames":100})", 100);
  ASSERT_TRUE(r.has_value());
  ASSERT_THAT(*r, IsOk());
  EXPECT_EQ(**r, R"({"output":"a.mp4","frames":100})");
  r = ParseResultLine("  kbus-result \t [1, 2]  \r", 100);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->value(), "[1, 2]") << "blanks around it go, the JSON stays as written";
  EXPECT_EQ(ParseResultLine("kbus-result \"text\"", 100)->value(), "\"text\"");
}

TEST(ResultLine, OtherLinesAreNotResultLines) {
  using kbus::handlers::ParseResultLine;
  for (const char* line : {"", "kbus-resultx {}", "kbus-result:{}", "Kbus-result {}", "progress: 5", "result {}",
                           "x kbus-result {}"}) {
    EXPECT_FALSE(ParseResultLine(line, 100).has_value()) << line;
  }
}

TEST(ResultLine, EmptyInvalidOrOversizeJsonIsRefusedSayingWhy) {
  using kbus::handlers::ParseResultLine;
  EXPECT_THAT(*ParseResultLine("kbus-result", 100), ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("no JSON")));
  EXPECT_THAT(*ParseResultLine("kbus-result   ", 100),
              ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("no JSON")));
  for (const char* bad : {"kbus-result {", "kbus-result {\"a\":}", "kbus-result not json", "kbus-result {} {}",
                          "kbus-result \"\xff\""}) {
    EXPECT_THAT(*ParseResultLine(bad, 100),
                ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("not one JSON value")))
        << bad;
  }
  const std::string at_bound = "\"" + std::string(98, 'x') + "\"";
  EXPECT_THAT(*ParseResultLine("kbus-result " + at_bound, 100), IsOk());
  EXPECT_THAT(*ParseResultLine("kbus-result " + at_bound + " ", 100), IsOk()) << "trailing blanks do not count";
  EXPECT_THAT(*ParseResultLine("kbus-result \"" + std::string(99, 'x') + "\"", 100),
              ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("101 bytes, more than the 100 allowed")));
}

TEST(RunProcess, TheProgramsResultLineIsKeptAndIsNotProgress) {
  std::vector<int> percents;
  ProcessObserver observer;
  observer.progress = [&](const kbus::handlers::Progress& p) { percents.push_back(p.percent); };
  const auto r = RunProcess(Encoder({"--seconds", "0", "--steps", "2", "--output", "a \"b\".mp4"}), observer);
  EXPECT_EQ(r.outcome, ProcessOutcome::kSucceeded);
  EXPECT_EQ(r.result, R"({"output":"a \"b\".mp4","frames":50})");
  EXPECT_EQ(r.results_refused, 0u);
  EXPECT_THAT(percents, ElementsAre(50, 100));
  EXPECT_TRUE(NoZombies());

  const auto failed = RunProcess(Encoder({"--seconds", "0", "--steps", "1", "--exit-code", "1"}));
  EXPECT_EQ(failed.outcome, ProcessOutcome::kFailed);
  EXPECT_EQ(failed.result, "") << "no result line printed";
}

TEST(RunProcess, TheLastValidResultLineWinsAndInvalidOnesAreCountedNotKept) {
  const auto r = RunProcess(Encoder({"--seconds", "0", "--steps", "1", "--result", R"({"n":1})", "--result",
                                     R"({"n":2})", "--result", "{not json", "--result", ""}));
  EXPECT_EQ(r.outcome, ProcessOutcome::kSucceeded);
  EXPECT_EQ(r.result, R"({"n":2})") << "the last valid one; the invalid ones after it change nothing";
  EXPECT_EQ(r.results_refused, 2u);
  EXPECT_THAT(r.result_refused_why, HasSubstr("no JSON")) << "the reason of the last refused";
  EXPECT_TRUE(NoZombies());
}

TEST(RunProcess, AnOversizeResultIsRefusedWhateverItsLength) {
  const std::string over = "\"" + std::string(kbus::handlers::kMaxProcessResultBytes - 1, 'x') + "\"";
  const std::string within = "\"" + std::string(kbus::handlers::kMaxProcessResultBytes - 2, 'x') + "\"";
  auto r = RunProcess(Encoder({"--seconds", "0", "--steps", "1", "--result", within, "--result", over}));
  EXPECT_EQ(r.result, within) << "16 KiB exactly is allowed; one byte more is not";
  EXPECT_EQ(r.results_refused, 1u);
  EXPECT_THAT(r.result_refused_why, HasSubstr("16385 bytes, more than the 16384 allowed"));
  // Longer than a line is read (64 KiB): refused too, not mistaken for anything.
  const std::string huge = "\"" + std::string(100 * 1024, 'y') + "\"";
  r = RunProcess(Encoder({"--seconds", "0", "--steps", "1", "--result", huge}));
  EXPECT_EQ(r.outcome, ProcessOutcome::kSucceeded);
  EXPECT_EQ(r.result, "");
  EXPECT_EQ(r.results_refused, 1u);
  EXPECT_THAT(r.result_refused_why, HasSubstr("longer than"));
  EXPECT_TRUE(NoZombies());
}

TEST(RunProcess, ReportsANonZeroExitAndDeathBySignal) {
  auto failed = RunProcess(Encoder({"--seconds", "0", "--exit-code", "3"}));
  EXPECT_EQ(failed.outcome, ProcessOutcome::kFailed);
  EXPECT_EQ(failed.exit_code, 3);
  EXPECT_EQ(failed.signal, 0);
  auto crashed = RunProcess(Encoder({"--seconds", "0.1", "--steps", "2", "--crash"}));
  EXPECT_EQ(crashed.outcome, ProcessOutcome::kFailed);
  EXPECT_EQ(crashed.signal, SIGABRT);
  EXPECT_EQ(crashed.exit_code, -1);
  EXPECT_TRUE(NoZombies());
}

TEST(RunProcess, ATimeoutEndsTheProcessAndItsGrandchildrenEvenIfTheyIgnoreSigterm) {
  int pgid = 0;
  ProcessObserver observer;
  observer.started = [&](int pid, const std::string&, std::chrono::milliseconds) { pgid = pid; };
  ProcessSpec spec = Encoder({"--spawn-child", "--ignore-term", "--seconds", "60"});
  spec.run_timeout = milliseconds(300);
  spec.kill_grace = milliseconds(300);
  const auto r = RunProcess(spec, observer);
  EXPECT_EQ(r.outcome, ProcessOutcome::kTimedOut);
  EXPECT_EQ(r.signal, SIGKILL) << "SIGTERM was ignored, so SIGKILL after the grace";
  EXPECT_GE(r.duration, milliseconds(600));
  EXPECT_LT(r.duration, milliseconds(10000));
  ASSERT_GT(pgid, 0);
  EXPECT_FALSE(GroupAlive(pgid)) << "a process of the job's group survived the timeout";
  EXPECT_TRUE(NoZombies());
}

TEST(RunProcess, AProcessThatEndsLeavesNoneOfItsGroupBehind) {
  int pgid = 0;
  ProcessObserver observer;
  observer.started = [&](int pid, const std::string&, std::chrono::milliseconds) { pgid = pid; };
  const auto r = RunProcess(Encoder({"--spawn-child", "--seconds", "0.05", "--steps", "1"}), observer);
  EXPECT_EQ(r.outcome, ProcessOutcome::kSucceeded);
  EXPECT_FALSE(GroupAlive(pgid)) << "the grandchild outlived its job";
  EXPECT_TRUE(NoZombies());
}

TEST(RunProcess, CancelFromAnotherThreadEndsTheRunAsCancelled) {
  ProcessControl control;
  std::thread canceller([&] {
    std::this_thread::sleep_for(milliseconds(200));
    control.Cancel();
  });
  ProcessSpec spec = Encoder({"--seconds", "60"});
  spec.kill_grace = milliseconds(2000);
  const auto r = RunProcess(spec, {}, &control);
  canceller.join();
  EXPECT_EQ(r.outcome, ProcessOutcome::kCancelled);
  EXPECT_EQ(r.signal, SIGTERM) << "it honours SIGTERM, so no SIGKILL was needed";
  EXPECT_LT(r.duration, milliseconds(2000));
  EXPECT_TRUE(NoZombies());
}

TEST(RunProcess, AChildWritingAHundredMegabytesDoesNotBlock) {
  // /bin/sh is the test's own program here (the launcher never adds a shell): 50 MB to each pipe.
  ProcessSpec spec;
  spec.path = "/bin/sh";
  spec.args = {"-c", "yes | head -c 50000000; head -c 50000000 /dev/zero >&2; echo 'progress: 100 done'"};
  spec.env = {{"PATH", "/usr/bin:/bin"}};
  spec.run_timeout = milliseconds(60000);
  std::vector<int> percents;
  ProcessObserver observer;
  observer.progress = [&](const kbus::handlers::Progress& p) { percents.push_back(p.percent); };
  const auto r = RunProcess(spec, observer);
  EXPECT_EQ(r.outcome, ProcessOutcome::kSucceeded) << r.error;
  EXPECT_EQ(r.stderr_tail.size(), 4096u);
  EXPECT_THAT(percents, ElementsAre(100)) << "the progress line after the flood was lost";
  EXPECT_EQ(r.stdout_lines, 25000001u);
}

TEST(RunProcess, AnUnknownOrRelativeOrMissingProgramIsALaunchFailure) {
  ProcessSpec missing;
  missing.path = "/nonexistent/kbus-no-such-program";
  auto r = RunProcess(missing);
  EXPECT_EQ(r.outcome, ProcessOutcome::kLaunchFailed);
  EXPECT_THAT(r.error, HasSubstr("No such file or directory"));
  ProcessSpec relative;
  relative.path = "true";
  r = RunProcess(relative);
  EXPECT_EQ(r.outcome, ProcessOutcome::kLaunchFailed);
  EXPECT_THAT(r.error, HasSubstr("not absolute"));
  const std::string plain = ::testing::TempDir() + "/kbus-not-executable";
  std::ofstream(plain) << "data\n";
  std::filesystem::permissions(plain, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  ProcessSpec not_executable;
  not_executable.path = plain;
  r = RunProcess(not_executable);
  EXPECT_EQ(r.outcome, ProcessOutcome::kLaunchFailed);
  EXPECT_THAT(r.error, HasSubstr("Permission denied"));
  EXPECT_TRUE(NoZombies());
}

TEST(RunProcess, TicksWhileTheChildRuns) {
  int ticks = 0;
  ProcessObserver observer;
  observer.tick = [&] { ++ticks; };
  observer.tick_interval = milliseconds(50);
  const auto r = RunProcess(Encoder({"--seconds", "0.4", "--steps", "2"}), observer);
  EXPECT_EQ(r.outcome, ProcessOutcome::kSucceeded);
  EXPECT_GE(ticks, 4);
  EXPECT_LE(ticks, 9);
}

// True while process `pid` runs (not a zombie), waiting up to a second.
bool ProcessAlive(int pid) {
  for (int i = 0; i < 100; ++i) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(stat, text)) return false;
    const auto close = text.rfind(')');
    const char state = close != std::string::npos && close + 2 < text.size() ? text[close + 2] : 'X';
    if (state == 'Z' || state == 'X') return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return true;
}

// A stand-in launcher: a forked process that runs `spec` and exits. Sets `launcher` and `job`
// (the job's pid, once it started); 0 for either when that failed.
void StartStandInLauncher(const ProcessSpec& spec, pid_t& launcher, int& job) {
  launcher = 0;
  job = 0;
  int pids[2];
  ASSERT_EQ(::pipe(pids), 0);
  launcher = ::fork();
  ASSERT_GE(launcher, 0);
  if (launcher == 0) {
    ::close(pids[0]);
    ProcessObserver observer;
    observer.started = [&](int pid, const std::string&, std::chrono::milliseconds) { (void)!::write(pids[1], &pid, sizeof pid); };
    RunProcess(spec, observer);
    ::_exit(0);
  }
  ::close(pids[1]);
  ASSERT_EQ(::read(pids[0], &job, sizeof job), static_cast<ssize_t>(sizeof job));
  ::close(pids[0]);
}

TEST(RunProcess, AJobDiesWithTheLauncherThatStartedIt) {
  pid_t launcher = 0;
  int job = 0;
  StartStandInLauncher(Encoder({"--seconds", "60"}), launcher, job);
  ASSERT_GT(job, 0);
  ASSERT_TRUE(ProcessAlive(job));
  ::kill(launcher, SIGKILL);
  int status = 0;
  ::waitpid(launcher, &status, 0);
  EXPECT_FALSE(ProcessAlive(job)) << "the job outlived the launcher killed with SIGKILL";
}

TEST(RunProcess, DurationsTooLongForTheClockNeitherTimeOutAtOnceNorTickWithoutPause) {
  // started + run_timeout once wrapped into the past: "forever" timed out after 5 ms, and a huge
  // heartbeat interval ticked on every loop.
  int ticks = 0;
  ProcessObserver observer;
  observer.tick = [&] { ++ticks; };
  observer.tick_interval = milliseconds(10000000000000);
  ProcessSpec spec = Encoder({"--seconds", "0.2", "--steps", "1"});
  spec.run_timeout = milliseconds(std::numeric_limits<std::int64_t>::max());
  spec.kill_grace = milliseconds(std::numeric_limits<std::int64_t>::max());
  const auto r = RunProcess(spec, observer);
  EXPECT_EQ(r.outcome, ProcessOutcome::kSucceeded) << kbus::handlers::OutcomeName(r.outcome);
  EXPECT_EQ(ticks, 0);
  EXPECT_TRUE(NoZombies());
}

TEST(ReplyTopics, ParsesNamesAndPatternsAndRefusesWhatKafkaWouldNot) {
  auto list = kbus::handlers::ParseReplyTopics("kbus.launcher.events, *.launcher-events,video.*");
  ASSERT_THAT(list, IsOk());
  EXPECT_THAT(*list, ElementsAre("kbus.launcher.events", "*.launcher-events", "video.*"));
  for (const char* bad : {"", "a,,b", "bad topic", "a/b", "events,x;y"}) {
    EXPECT_THAT(kbus::handlers::ParseReplyTopics(bad),
                ErrorIs(kbus::ErrorCode::kInvalidArgument, HasSubstr("is not a topic name or pattern")))
        << bad;
  }
  EXPECT_THAT(kbus::handlers::ParseReplyTopics(std::string(250, 'a')), ErrorIs(kbus::ErrorCode::kInvalidArgument));
}

// The pid of a process of group `pgid` other than its leader, waiting up to 5 s for one.
int GrandchildOf(int pgid) {
  for (int i = 0; i < 500; ++i) {
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const int pid = std::atoi(entry.path().filename().c_str());
      if (pid == 0 || pid == pgid) continue;
      if (::getpgid(pid) == pgid) return pid;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  return 0;
}

TEST(RunProcess, AJobsWholeProcessTreeEndsWhenTheLauncherIsKilledEvenAGrandchildIgnoringSigterm) {
  ProcessSpec spec = Encoder({"--ignore-term", "--spawn-child", "--seconds", "60"});
  spec.kill_grace = milliseconds(300);
  pid_t launcher = 0;
  int job = 0;
  StartStandInLauncher(spec, launcher, job);
  ASSERT_GT(job, 0);
  const int grandchild = GrandchildOf(job);
  ASSERT_GT(grandchild, 0) << "the job's child never appeared";
  ::kill(launcher, SIGKILL);
  int status = 0;
  ::waitpid(launcher, &status, 0);
  // The grace (300 ms) and the SIGKILL after it, with room for a loaded machine.
  EXPECT_FALSE(GroupAlive(job, milliseconds(5000)))
      << "the job's grandchild " << grandchild << " outlived the launcher killed with SIGKILL";
}

}  // namespace
