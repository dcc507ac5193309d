// fake-encoder: behaves like a long encoding job, for the launcher's tests and the demo.
//
//   fake-encoder [--seconds S] [--steps N] [--exit-code C] [--crash] [--ignore-term]
//                [--stderr TEXT] [--spawn-child] [--flood MB] [--track DIR]
//
// Prints N progress lines ("progress: 40 encoding pass 1", the launcher's progress format)
// evenly over S seconds (default 1 s, 5 steps), then exits with C (default 0). --crash aborts
// halfway instead (death by SIGABRT). --ignore-term ignores SIGTERM, so only SIGKILL stops it.
// --stderr writes TEXT to stderr first. --spawn-child leaves a grandchild (a copy of itself that
// sleeps for a minute) in its process group, as encoders with helper processes do.
// --flood writes MB mebibytes to stdout and to stderr first, as chatty programs do. --track
// counts the copies running at once: it adds a file named after its pid to DIR, reports the
// number of files as its first progress line ("progress: 0 running N"), and removes its file
// when it exits normally.

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  double seconds = 1;
  int steps = 5;
  int exit_code = 0;
  bool crash = false;
  std::string track;
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
  return exit_code;
}
