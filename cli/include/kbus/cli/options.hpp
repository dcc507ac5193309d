#pragma once
// kbus::cli: the option parsing kbus's programs share (the `kbus` tool, kbus-launcher, the
// examples): KBUS_* environment variables, -X librdkafka properties, worker settings, name=value
// headers and NAME[:PARTITIONS] topic specs, help and exit codes, stop signals. It is for main()s:
// Boost.Program_options appears here and in them, never in the other kbus libraries, which see
// only the typed config structs this fills.
//
// Usage errors come back as kbus::Error with ErrorCode::kInvalidArgument and a message that names
// the flag (or the environment variable it came from); Report() turns them into exit code 2.

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <boost/program_options.hpp>

#include "kbus/kafka/config.hpp"
#include "kbus/record.hpp"
#include "kbus/result.hpp"

namespace kbus::kafka {
class Worker;
}  // namespace kbus::kafka

namespace kbus::cli {

namespace po = boost::program_options;

// Columns of --help output.
inline constexpr unsigned kHelpWidth = 100;

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the operation failed: broker, payload, timeout
inline constexpr int kExitUsage = 2;    // a bad flag or value

// "brokers-count" -> "KBUS_BROKERS_COUNT".
std::string EnvVarName(std::string_view option);

// What ParseArgs found. The option values themselves land in the variables bound with
// po::value(&x).
struct ParsedArgs {
  po::variables_map vm;
  std::set<std::string> from_env;  // long names whose value came from KBUS_* variables

  bool help() const { return vm.count("help") != 0; }
  // How the user gave an option: "--kind", or "KBUS_KIND" when it came from the environment.
  std::string Spelling(const std::string& name) const;
};

// Parses a subcommand's arguments (without the command words). Each option in `visible` (what
// --help lists) can also come from its KBUS_* variable; a repeatable option takes one value per
// line there. A flag on the command line beats the variable. `hidden` holds the options that
// take bare arguments through `positional`; they are never read from the environment.
Result<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                             const po::options_description& visible,
                             const po::options_description& hidden = {},
                             const po::positional_options_description& positional = {});

// Options every command that talks to a broker shares: --brokers, -X, --log-level.
struct ClientOptions {
  std::string brokers;
  std::vector<std::string> properties;  // -X key=value, as typed
  std::string log_level;
};
void AddClientOptions(po::options_description& desc, ClientOptions& options);
void AddLogLevelOption(po::options_description& desc, std::string& level);

// Checks the shared options, sets the log level and fills `client`. `command` ("send") words the
// refusal of --brokers embedded: such a broker would die with this process.
Status ApplyClientOptions(const ClientOptions& options, const ParsedArgs& parsed,
                          std::string_view command, kafka::ClientConfig& client);
Status ApplyLogLevel(const std::string& level, const ParsedArgs& parsed);
// The same for a long-running service that is not a worker (kbus-scheduler): --brokers embedded
// passes, for the caller to start the broker (kafka::StartEmbeddedIfRequested).
Status ApplyServiceClientOptions(const ClientOptions& options, const ParsedArgs& parsed,
                                 kafka::ClientConfig& client);

// Options of a worker process: the client options plus the WorkerConfig settings, each also
// from its KBUS_* variable (KBUS_GROUP, KBUS_MAX_DELIVERIES, ...).
struct WorkerOptions {
  ClientOptions client;
  std::string group;
  int max_deliveries = 0;
  std::int64_t retry_backoff_initial_ms = 0;
  std::int64_t retry_backoff_max_ms = 0;
  std::int64_t session_timeout_ms = 0;
  std::int64_t commit_interval_ms = 0;
  std::int64_t producer_linger_ms = -1;  // -1: the worker's default (WorkerConfig::producer_linger)
  std::string assignment_strategy;
  int handler_threads = 0;
  std::string ordering;
  std::int64_t visibility_timeout_ms = 0;
  std::vector<std::string> retry_tiers;  // "10s", "1m,10m", ...
  int local_attempts = 0;
  int http_port = 0;  // 0: no operations port
};
// Adds --brokers, -X, --log-level, --group and the worker settings, defaulting to `defaults`.
void AddWorkerOptions(po::options_description& desc, WorkerOptions& options,
                      const kafka::WorkerConfig& defaults);
// Fills `config` and validates it; the error names the flag. --brokers embedded is accepted:
// the caller starts the broker (kafka::StartEmbeddedIfRequested).
Status ApplyWorkerOptions(const WorkerOptions& options, const ParsedArgs& parsed,
                          kafka::WorkerConfig& config);

// A delay written as a number and a unit: 500ms, 10s, 5m, 1h, 2d. `flag` names the option.
Result<std::chrono::milliseconds> ParseDelay(std::string_view spec, std::string_view flag);
// An ISO 8601 time with its offset: 2026-12-24T18:00:00Z, 2026-12-24T19:00:00.250+01:00.
Result<std::chrono::sys_time<std::chrono::milliseconds>> ParseTime(std::string_view spec, std::string_view flag);

// "key=value" (the value may contain '=' and be empty; the key may not be empty). `flag` names
// the option in the error.
Result<Header> ParseKeyValue(std::string_view spec, std::string_view flag);
// -X key=value... into a property map; a later value of a key wins.
Result<std::map<std::string, std::string>> ParseProperties(const std::vector<std::string>& specs,
                                                           std::string_view flag);
// "NAME[:PARTITIONS]": the name must be non-empty, partitions a positive integer.
struct TopicArg {
  std::string name;
  int partitions = 0;
};
Result<TopicArg> ParseTopicSpec(std::string_view spec, std::string_view flag,
                                int default_partitions);

// Replaces the values of secret properties wherever they occur in `text` with "***", for
// messages that may quote a value (librdkafka's refusals do).
std::string MaskSecrets(std::string text, const std::map<std::string, std::string>& properties);

// The program named in messages: "kbus" unless a program that shares these options says
// otherwise. Call it first thing in main().
void SetProgramName(std::string_view program);

// Prints "<program> <command>: <message>" on stderr (just "<program>:" for an empty command);
// returns kExitUsage for invalid arguments and kExitFailure otherwise.
int Report(std::string_view command, const Error& error);
// "kbus <command>: <message>" on stderr, for usage errors found outside ParseArgs.
int ReportUsage(std::string_view command, std::string_view message);

// Prints "Usage: <usage>", the summary and the options, as --help shows them.
void PrintHelp(std::ostream& os, std::string_view usage, std::string_view summary,
               const po::options_description& visible);

// SIGINT and SIGTERM set a flag (and nothing else) from then on.
void InstallStopSignals();
bool StopRequested();

// For long-running programs (docs/operations.md, "Shutdown"): the first SIGTERM or SIGINT sets
// StopRequested() and stops the worker given to StopWorkerOnSignal, now or when it is given; a
// second exits at once with 128 + the signal's number, committing nothing.
void InstallTwoStepStopSignals();
// The worker the first signal stops; null once it is gone.
void StopWorkerOnSignal(kafka::Worker* worker);

}  // namespace kbus::cli
