// fake-encoder: behaves like a long encoding job, for the launcher's tests and the demo.
//
//   fake-encoder [--seconds S] [--steps N] [--exit-code C] [--crash] [--ignore-term]
//                [--stderr TEXT] [--spawn-child]
//
// Prints N progress lines ("progress: 40 encoding pass 1", the launcher's progress format)
// evenly over S seconds (default 1 s, 5 steps), then exits with C (default 0). --crash aborts
// halfway instead (death by SIGABRT). --ignore-term ignores SIGTERM, so only SIGKILL stops it.
// --stderr writes TEXT to stderr first. --spawn-child leaves a grandchild (a copy of itself that
// sleeps for a minute) in its process group, as encoders with helper processes do.

#include <unistd.h>

#include <chrono>
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
  steps = steps < 1 ? 1 : steps;
  const auto pause = std::chrono::duration<double>(seconds / steps);
  for (int s = 1; s <= steps; ++s) {
    std::this_thread::sleep_for(pause);
    if (crash && s * 2 >= steps) std::abort();
    std::printf("progress: %d encoding pass %d\n", s * 100 / steps, s);
    std::fflush(stdout);
  }
  return exit_code;
}
