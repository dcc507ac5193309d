// kbus: the command-line tool. `kbus <command> [options]`; see `kbus --help`.
//
// Results go to stdout, one line each, for scripts; errors (one line, naming the flag) and the
// library's JSON log lines go to stderr. Exit codes: 0 done, 1 failed, 2 bad usage.

#include <algorithm>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "kbus/cli/options.hpp"

namespace kbus::cli {

namespace {

struct Command {
  std::string_view name;  // as typed after "kbus"
  std::string_view summary;
  int (*run)(const std::vector<std::string>& args);
  void (*help)(std::ostream& os);  // what `kbus <name> --help` prints
};

// In the order `kbus --help` lists them.
constexpr Command kCommands[] = {
    {"broker", "run an embedded broker on a loopback port until SIGINT/SIGTERM", &RunBroker,
     &PrintBrokerHelp},
    {"console", "serve the console: a web page and a JSON API over jobs, workflows, dead letters",
     &RunConsole, &PrintConsoleHelp},
    {"send", "send one message with a kbus envelope; prints its id", &RunSend, &PrintSendHelp},
    {"tail", "print a topic's records as JSON lines", &RunTail, &PrintTailHelp},
    {"watch", "follow launcher jobs: a progress bar, or a line per event", &RunWatch, &PrintWatchHelp},
    {"workflows", "print a workflow's instances from its state topic, a JSON line each", &RunWorkflows,
     &PrintWorkflowsHelp},
    {"topics create", "create topics (Kafka admin API)", &RunTopicsCreate, &PrintTopicsCreateHelp},
    {"topics list", "list topics and their partition counts", &RunTopicsList, &PrintTopicsListHelp},
    {"dlq list", "print a group's dead letters as JSON lines", &RunDlqList, &PrintDlqListHelp},
    {"dlq show", "print one dead letter: headers, payload, diagnostics", &RunDlqShow,
     &PrintDlqShowHelp},
    {"dlq redrive", "re-send a group's dead letters to where they came from", &RunDlqRedrive,
     &PrintDlqRedriveHelp},
    {"schedules create", "create or replace a recurring schedule; waits for the scheduler's answer",
     &RunSchedulesCreate, &PrintSchedulesCreateHelp},
    {"schedules list", "list the schedules: calendar, next fire time, paused, last outcome",
     &RunSchedulesList, &PrintSchedulesListHelp},
    {"schedules describe", "print one schedule: definition, next fire times, runs, requests waiting",
     &RunSchedulesDescribe, &PrintSchedulesDescribeHelp},
    {"schedules pause", "pause a schedule (--note says why)", &RunSchedulesPause, &PrintSchedulesPauseHelp},
    {"schedules resume", "resume a paused schedule from now", &RunSchedulesResume, &PrintSchedulesResumeHelp},
    {"schedules trigger", "fire a schedule once, now", &RunSchedulesTrigger, &PrintSchedulesTriggerHelp},
    {"schedules backfill", "fire a schedule's ticks of a past period", &RunSchedulesBackfill,
     &PrintSchedulesBackfillHelp},
    {"schedules delete", "delete a schedule and its history", &RunSchedulesDelete, &PrintSchedulesDeleteHelp},
    {"delayed list", "list the delayed messages waiting, soonest due first", &RunDelayedList,
     &PrintDelayedListHelp},
    {"delayed cancel", "cancel delayed messages by id", &RunDelayedCancel, &PrintDelayedCancelHelp},
    {"health", "ask a kbus program's operations port: /readyz, /healthz or /metrics", &RunHealth,
     &PrintHealthHelp},
};

void PrintToolHelp(std::ostream& os) {
  os << "Usage: kbus <command> [options]\n"
        "       kbus --help | --version\n\n"
        "Commands:\n";
  std::size_t width = 0;
  for (const auto& c : kCommands) width = std::max(width, c.name.size());
  for (const auto& c : kCommands) {
    os << "  " << c.name << std::string(width + 2 - c.name.size(), ' ') << c.summary << "\n";
  }
  os << "\nExit codes: 0 done, 1 failed, 2 bad usage. Results go to stdout; errors and the\n"
        "library's logs (JSON lines) to stderr.\n";
  for (const auto& c : kCommands) {
    os << "\n----\n";
    c.help(os);
  }
}

int Main(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cerr << "kbus: name a command; `kbus --help` lists them\n";
    return kExitUsage;
  }
  const std::string& first = args[0];
  if (first == "--help" || first == "-h" || first == "help") {
    PrintToolHelp(std::cout);
    return kExitOk;
  }
  if (first == "--version") {
    std::cout << "kbus " << KBUS_VERSION << "\n";
    return kExitOk;
  }
  if (!first.empty() && first[0] == '-') {
    std::cerr << "kbus: unknown option '" << first
              << "': options go after the command (kbus <command> [options]); see `kbus --help`\n";
    return kExitUsage;
  }
  // The longest command whose words start the arguments: "topics create" before "topics".
  for (const auto& c : kCommands) {
    std::vector<std::string> words;
    for (std::string_view rest = c.name; !rest.empty();) {
      const auto space = rest.find(' ');
      words.emplace_back(rest.substr(0, space));
      rest = space == std::string_view::npos ? std::string_view() : rest.substr(space + 1);
    }
    if (args.size() >= words.size() && std::equal(words.begin(), words.end(), args.begin())) {
      return c.run(std::vector<std::string>(
          args.begin() + static_cast<std::ptrdiff_t>(words.size()), args.end()));
    }
  }
  if (first == "topics") {
    std::cerr << "kbus topics: name a subcommand: `kbus topics create` or `kbus topics list`\n";
    return kExitUsage;
  }
  if (first == "dlq") {
    std::cerr << "kbus dlq: name a subcommand: `kbus dlq list`, `kbus dlq show` or "
                 "`kbus dlq redrive`\n";
    return kExitUsage;
  }
  if (first == "schedules") {
    std::cerr << "kbus schedules: name a subcommand: create, list, describe, pause, resume, trigger, "
                 "backfill or delete (`kbus --help`)\n";
    return kExitUsage;
  }
  if (first == "delayed") {
    std::cerr << "kbus delayed: name a subcommand: `kbus delayed list` or `kbus delayed cancel`\n";
    return kExitUsage;
  }
  std::cerr << "kbus: unknown command '" << first << "'; `kbus --help` lists the commands\n";
  return kExitUsage;
}

}  // namespace

}  // namespace kbus::cli

int main(int argc, char** argv) {
  return kbus::cli::Main(std::vector<std::string>(argv + 1, argv + argc));
}
