// fake-encoder: behaves like a long encoding job, for the launcher's tests and the demo.
//
//   fake-encoder [--seconds S] [--steps N] [--exit-code C] [--crash] [--ignore-term]
//                [--stderr TEXT] [--spawn-child] [--flood MB] [--track DIR] [--output NAME]
//                [--result TEXT] [--eat-memory MB] [--echo-args ARG...]
//
// Prints N progress lines ("progress: 40 encoding pass 1", the launcher's progress format)
// evenly over S seconds (default 1 s, 5 steps), then exits with C (default 0). --crash aborts
// halfway instead (death by SIGABRT). --ignore-term ignores SIGTERM, so only SIGKILL stops it.
// --stderr writes TEXT to stderr first. --spawn-child leaves a grandchild (a copy of itself that
// sleeps for a minute) in its process group, as encoders with helper processes do.
// --flood writes MB mebibytes to stdout and to stderr first, as chatty programs do. --track
// counts the copies running at once: it adds a file named after its pid to DIR, reports the
// number of files as its first progress line ("progress: 0 running N"), and removes its file
// when it exits normally. When it ends with exit code 0 it reports its result last, as a
// program run by the launcher may: `kbus-result {"output":"NAME","frames":N}` (NAME from
// --output, default "out.mp4"; 25 frames per step). --result TEXT prints `kbus-result TEXT`
// instead, as given, once per --result in order (for the tests: invalid JSON, an oversize
// result, which one wins). --eat-memory allocates MB mebibytes and writes to every page of it
// before its steps, so a memory limit below that ends it. --echo-args takes every argument
// after it as data, not options, and reports them as its result, byte for byte:
// `kbus-result {"args":["A1","A2",...]}` (JSON strings: quotes, backslashes and control
// characters escaped, other bytes as given), for checking that arguments reach a program
// unchanged.

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

// `s` as the inside of a JSON string: quotes, backslashes and control characters escaped.
std::string JsonEscaped(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 1;
  int steps = 5;
  int exit_code = 0;
  bool crash = false;
  std::string track;
  std::string output = "out.mp4";
  std::vector<std::string> results;
  std::vector<std::unique_ptr<char[]>> eaten;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fake-encoder: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seconds") {
      seconds = std::atof(value());
    } else if (a == "--steps") {
      steps = std::atoi(value());
    } else if (a == "--exit-code") {
      exit_code = std::atoi(value());
    } else if (a == "--crash") {
      crash = true;
    } else if (a == "--ignore-term") {
      std::signal(SIGTERM, SIG_IGN);
    } else if (a == "--stderr") {
      std::fprintf(stderr, "%s\n", value());
    } else if (a == "--flood") {
      const std::string block(1 << 16, 'x');
      for (long i = 0, n = std::atol(value()) * 16; i < n; ++i) {
        std::fwrite(block.data(), 1, block.size(), stdout);
        std::fwrite(block.data(), 1, block.size(), stderr);
      }
      std::fputc('\n', stdout);
      std::fflush(stdout);
    } else if (a == "--output") {
      output = value();
    } else if (a == "--result") {
      results.emplace_back(value());
    } else if (a == "--eat-memory") {
      constexpr std::size_t kMiB = 1 << 20;
      for (long n = std::atol(value()); n > 0; --n) {
        eaten.emplace_back(new char[kMiB]);
        for (std::size_t at = 0; at < kMiB; at += 4096) eaten.back()[at] = static_cast<char>(at + n);
      }
    } else if (a == "--echo-args") {
      std::string echo = "{\"args\":[";
      for (int k = i + 1; k < argc; ++k) echo += (k > i + 1 ? ",\"" : "\"") + JsonEscaped(argv[k]) + "\"";
      results.push_back(echo + "]}");
      break;
    } else if (a == "--track") {
      track = value();
    } else if (a == "--spawn-child") {
      if (::fork() == 0) {
        std::this_thread::sleep_for(std::chrono::seconds(60));
        std::_Exit(0);
      }
    } else {
      std::fprintf(stderr, "fake-encoder: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  std::filesystem::path mine;
  if (!track.empty()) {
    mine = std::filesystem::path(track) / std::to_string(::getpid());
    std::ofstream(mine).put('\n');
    const auto running = std::distance(std::filesystem::directory_iterator(track), {});
    std::printf("progress: 0 running %ld\n", static_cast<long>(running));
    std::fflush(stdout);
  }
  steps = steps < 1 ? 1 : steps;
  const auto pause = std::chrono::duration<double>(seconds / steps);
  for (int s = 1; s <= steps; ++s) {
    std::this_thread::sleep_for(pause);
    if (crash && s * 2 >= steps) std::abort();
    std::printf("progress: %d encoding pass %d\n", s * 100 / steps, s);
    std::fflush(stdout);
  }
  if (!mine.empty()) std::filesystem::remove(mine);
  if (exit_code == 0) {
    for (const std::string& r : results) std::printf("kbus-result %s\n", r.c_str());
    if (results.empty()) {
      std::printf("kbus-result {\"output\":\"%s\",\"frames\":%d}\n", JsonEscaped(output).c_str(), steps * 25);
    }
    std::fflush(stdout);
  }
  return exit_code;
}
