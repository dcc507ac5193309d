#include "kbus/cli/options.hpp"

#include <atomic>
#include <cctype>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <iostream>

#include <unistd.h>

#include "kbus/kafka/worker.hpp"
#include "kbus/log.hpp"

namespace kbus::cli {

namespace {

Error Usage(std::string message) { return Error(ErrorCode::kInvalidArgument, std::move(message)); }

// Long options only by their full name: prefix guessing would turn a typo into another option.
constexpr int kStyle =
    po::command_line_style::default_style & ~po::command_line_style::allow_guessing;

std::vector<std::string> Lines(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    const auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty()) out.emplace_back(line);
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return out;
}

// Boost names an option by its long name even when it was typed short ("-X" reads as
// "'--property'"); name both, so the user finds the flag they typed.
std::string WithShortNames(std::string message, const po::options_description& desc) {
  for (const auto& option : desc.options()) {
    if (option->long_name().empty()) continue;
    const std::string short_name =
        option->canonical_display_name(po::command_line_style::allow_dash_for_short);
    const std::string quoted_long = "'--" + option->long_name() + "'";
    if (short_name.size() != 2) continue;
    if (const auto at = message.find(quoted_long); at != std::string::npos) {
      message.replace(
          at, quoted_long.size(),
          "'" + short_name + "' (" + quoted_long.substr(1, quoted_long.size() - 2) + ")");
    }
  }
  return message;
}

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void OnStopSignal(int) { g_stop.store(true); }

// The two-step handler of long-running programs. Async-signal-safe: lock-free atomics,
// Worker::Stop (it only sets an atomic) and _exit.
std::atomic<int> g_signals{0};
std::atomic<kafka::Worker*> g_worker{nullptr};
static_assert(std::atomic<kafka::Worker*>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the signal handler needs lock-free atomics");

extern "C" void OnTwoStepStopSignal(int sig) {
  if (g_signals.fetch_add(1) > 0) _exit(128 + sig);  // the second signal: no more waiting
  g_stop.store(true);
  if (auto* w = g_worker.load()) w->Stop();
}

}  // namespace

std::string EnvVarName(std::string_view option) {
  std::string out = "KBUS_";
  for (char c : option) {
    out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string ParsedArgs::Spelling(const std::string& name) const {
  return from_env.count(name) != 0 ? EnvVarName(name) : "--" + name;
}

Result<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                             const po::options_description& visible,
                             const po::options_description& hidden,
                             const po::positional_options_description& positional) {
  ParsedArgs parsed;
  po::options_description all;
  all.add(visible).add(hidden);
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).style(kStyle).run(),
              parsed.vm);
  } catch (const po::error& e) {
    return Usage(WithShortNames(e.what(), visible));
  }
  if (parsed.help()) return parsed;  // --help needs nothing else, not even valid variables

  for (const auto& option : visible.options()) {
    const std::string& name = option->long_name();
    // Switches (only --help) are not read from the environment: KBUS_HELP=1 helps nobody.
    if (name.empty() || option->semantic()->max_tokens() == 0) continue;
    if (parsed.vm.count(name) != 0 && !parsed.vm[name].defaulted()) continue;  // flag wins
    const std::string var = EnvVarName(name);
    const char* value = std::getenv(var.c_str());
    if (value == nullptr) continue;
    std::vector<std::string> tokens;
    for (const auto& line : Lines(value)) tokens.push_back("--" + name + "=" + line);
    if (tokens.empty()) continue;  // set but empty: as if unset
    try {
      po::store(po::command_line_parser(tokens).options(visible).style(kStyle).run(), parsed.vm);
    } catch (const po::error& e) {
      return Usage(var + ": " + WithShortNames(e.what(), visible));
    }
    parsed.from_env.insert(name);
  }
  try {
    po::notify(parsed.vm);
  } catch (const po::error& e) {
    return Usage(WithShortNames(e.what(), visible));
  }
  return parsed;
}

void AddLogLevelOption(po::options_description& desc, std::string& level) {
  desc.add_options()("log-level", po::value(&level)->default_value("warn"),
                     "library log threshold: debug, info, warn, error or off (JSON lines on "
                     "stderr)");
}

void AddClientOptions(po::options_description& desc, ClientOptions& options) {
  desc.add_options()(
      "brokers,b",
      po::value(&options.brokers)->default_value("localhost:9092")->value_name("host:port"),
      "bootstrap servers host:port[,host:port]")(
      "property,X", po::value(&options.properties)->value_name("key=value"),
      "a librdkafka property, as kcat's -X; repeatable (KBUS_PROPERTY: one per line)");
  AddLogLevelOption(desc, options.log_level);
}

Status ApplyLogLevel(const std::string& level, const ParsedArgs& parsed) {
  LogLevel parsed_level;
  if (!ParseLogLevel(level, parsed_level)) {
    return Usage(parsed.Spelling("log-level") + " '" + level +
                 "' is not one of debug, info, warn, error, off");
  }
  SetLogLevel(parsed_level);
  return Ok();
}

namespace {
// The shared part of ApplyClientOptions and ApplyWorkerOptions: log level, brokers, -X.
Status ApplyClient(const ClientOptions& options, const ParsedArgs& parsed,
                   kafka::ClientConfig& client) {
  if (Status s = ApplyLogLevel(options.log_level, parsed); !s.ok()) return s;
  if (options.brokers.empty()) {
    return Usage(parsed.Spelling("brokers") + " is empty: give host:port[,host:port]");
  }
  auto properties = ParseProperties(
      options.properties, parsed.from_env.count("property") != 0 ? EnvVarName("property") : "-X");
  if (!properties.ok()) return properties.error();
  client.brokers = options.brokers;
  client.properties = std::move(properties.value());
  return Ok();
}
}  // namespace

Status ApplyClientOptions(const ClientOptions& options, const ParsedArgs& parsed,
                          std::string_view command, kafka::ClientConfig& client) {
  if (options.brokers == "embedded") {
    return Usage(parsed.Spelling("brokers") + " embedded would start a broker inside `kbus " +
                 std::string(command) +
                 "` that dies when it exits: start one with `kbus broker` and pass the address "
                 "it prints");
  }
  if (Status s = ApplyClient(options, parsed, client); !s.ok()) return s;
  client.client_id = "kbus-cli";
  return Ok();
}

Status ApplyServiceClientOptions(const ClientOptions& options, const ParsedArgs& parsed,
                                 kafka::ClientConfig& client) {
  return ApplyClient(options, parsed, client);
}

void AddWorkerOptions(po::options_description& desc, WorkerOptions& options,
                      const kafka::WorkerConfig& defaults) {
  auto ms = [](std::chrono::milliseconds d) { return static_cast<std::int64_t>(d.count()); };
  AddClientOptions(desc, options.client);
  desc.add_options()("group,g", po::value(&options.group)->default_value(defaults.group),
                     "consumer group id; its dead-letter topic is <group>.dlq")(
      "max-deliveries", po::value(&options.max_deliveries)->default_value(defaults.max_deliveries),
      "handler runs before a failing record is dead-lettered")(
      "retry-backoff-initial-ms",
      po::value(&options.retry_backoff_initial_ms)->default_value(ms(defaults.retry_backoff_initial)),
      "first retry delay; doubles per attempt, with jitter")(
      "retry-backoff-max-ms",
      po::value(&options.retry_backoff_max_ms)->default_value(ms(defaults.retry_backoff_max)),
      "longest retry delay")(
      "session-timeout-ms",
      po::value(&options.session_timeout_ms)->default_value(ms(defaults.session_timeout)),
      "group session timeout; failover takes about twice this")(
      "commit-interval-ms",
      po::value(&options.commit_interval_ms)->default_value(ms(defaults.commit_interval)),
      "how often finished offsets are committed")(
      "producer-linger-ms", po::value(&options.producer_linger_ms)->default_value(-1),
      "how long the worker's producer waits to fill a request, 0-1000 (default: 1, or 5 with a workflow)")(
      "assignment-strategy",
      po::value(&options.assignment_strategy)->default_value(defaults.assignment_strategy),
      "range, roundrobin or cooperative-sticky; the same for every member of a group")(
      "handler-threads", po::value(&options.handler_threads)->default_value(defaults.handler_threads),
      "threads running handlers in parallel")(
      "ordering", po::value(&options.ordering)->default_value(std::string(kafka::OrderingName(defaults.ordering))),
      "which records may run at once: key (one per key, in order), partition (one per partition) "
      "or unordered")(
      "visibility-timeout-ms",
      po::value(&options.visibility_timeout_ms)->default_value(ms(defaults.visibility_timeout)),
      "how long a delivery may run before it is abandoned and delivered again")(
      "retry-tier", po::value(&options.retry_tiers)->composing(),
      "a delay tier for retries (500ms, 10s, 5m, 1h; repeatable or comma-separated): after "
      "--local-attempts, a failing record waits in <group>.retry.<delay>")(
      "local-attempts", po::value(&options.local_attempts)->default_value(defaults.local_attempts),
      "deliveries made in the worker before a failing record moves to a retry tier")(
      "http-port", po::value(&options.http_port)->default_value(defaults.http_port > 0 ? defaults.http_port : 0)->value_name("PORT"),
      "serve /healthz, /readyz and /metrics on this TCP port (0: none; docs/operations.md)");
}

Result<std::chrono::milliseconds> ParseDelay(std::string_view spec, std::string_view flag) {
  std::size_t digits = 0;
  while (digits < spec.size() && spec[digits] >= '0' && spec[digits] <= '9') ++digits;
  const std::string_view unit = spec.substr(digits);
  std::int64_t value = 0;
  const bool number = digits > 0 && digits <= 9 &&
                      std::from_chars(spec.data(), spec.data() + digits, value).ec == std::errc();
  const std::int64_t scale = unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60000 : unit == "h" ? 3600000
                            : unit == "d" ? 86400000 : 0;
  if (!number || scale == 0 || value <= 0) {
    return Usage(std::string(flag) + " '" + std::string(spec) +
                 "': expected a positive number and a unit, e.g. 500ms, 10s, 5m, 1h or 2d");
  }
  return std::chrono::milliseconds(value * scale);
}

Result<std::chrono::sys_time<std::chrono::milliseconds>> ParseTime(std::string_view spec, std::string_view flag) {
  using namespace std::chrono;
  auto bad = [&] {
    return Usage(std::string(flag) + " '" + std::string(spec) +
                 "': expected an ISO 8601 time with its offset, e.g. 2026-12-24T18:00:00Z or "
                 "2026-12-24T19:00:00+01:00");
  };
  std::size_t at = 0;
  auto number = [&](std::size_t width, int& out) {
    if (at + width > spec.size()) return false;
    auto [end, ec] = std::from_chars(spec.data() + at, spec.data() + at + width, out);
    if (ec != std::errc() || end != spec.data() + at + width) return false;
    at += width;
    return true;
  };
  auto expect = [&](char c) {
    if (at >= spec.size() || spec[at] != c) return false;
    ++at;
    return true;
  };
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, ms = 0;
  if (!number(4, y) || !expect('-') || !number(2, mo) || !expect('-') || !number(2, d)) return bad();
  if (!(expect('T') || expect(' ')) || !number(2, h) || !expect(':') || !number(2, mi)) return bad();
  if (expect(':')) {
    if (!number(2, sec)) return bad();
    if (expect('.')) {
      std::size_t digits = 0;
      while (at < spec.size() && spec[at] >= '0' && spec[at] <= '9') {
        if (digits < 3) ms = ms * 10 + (spec[at] - '0');
        ++digits;
        ++at;
      }
      if (digits == 0) return bad();
      for (; digits < 3; ++digits) ms *= 10;
    }
  }
  int offset_min = 0;
  if (expect('Z') || expect('z')) {
  } else if (at < spec.size() && (spec[at] == '+' || spec[at] == '-')) {
    const int sign = spec[at] == '-' ? -1 : 1;
    ++at;
    int oh = 0, om = 0;
    if (!number(2, oh) || !expect(':') || !number(2, om) || oh > 23 || om > 59) return bad();
    offset_min = sign * (oh * 60 + om);
  } else {
    return bad();
  }
  if (at != spec.size()) return bad();
  const year_month_day ymd{year(y), month(static_cast<unsigned>(mo)), day(static_cast<unsigned>(d))};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 59) return bad();
  return sys_days(ymd) + hours(h) + minutes(mi) + seconds(sec) + milliseconds(ms) - minutes(offset_min);
}

Status ApplyWorkerOptions(const WorkerOptions& options, const ParsedArgs& parsed,
                          kafka::WorkerConfig& config) {
  // "embedded" passes: a worker process may host the broker it uses (the caller starts it).
  if (Status s = ApplyClient(options.client, parsed, config.client); !s.ok()) return s;
  for (const auto& [name, value] : {std::pair{"retry-backoff-initial-ms", options.retry_backoff_initial_ms},
                                    {"retry-backoff-max-ms", options.retry_backoff_max_ms},
                                    {"session-timeout-ms", options.session_timeout_ms},
                                    {"commit-interval-ms", options.commit_interval_ms},
                                    {"visibility-timeout-ms", options.visibility_timeout_ms}}) {
    if (value < 0) return Usage(parsed.Spelling(name) + " must not be negative");
  }
  config.group = options.group;
  config.max_deliveries = options.max_deliveries;
  config.retry_backoff_initial = std::chrono::milliseconds(options.retry_backoff_initial_ms);
  config.retry_backoff_max = std::chrono::milliseconds(options.retry_backoff_max_ms);
  config.session_timeout = std::chrono::milliseconds(options.session_timeout_ms);
  config.commit_interval = std::chrono::milliseconds(options.commit_interval_ms);
  if (options.producer_linger_ms < -1 || options.producer_linger_ms > 1000) {
    return Usage(parsed.Spelling("producer-linger-ms") + " must be between 0 and 1000");
  }
  if (options.producer_linger_ms >= 0) config.producer_linger = std::chrono::milliseconds(options.producer_linger_ms);
  config.assignment_strategy = options.assignment_strategy;
  config.handler_threads = options.handler_threads;
  config.visibility_timeout = std::chrono::milliseconds(options.visibility_timeout_ms);
  config.local_attempts = options.local_attempts;
  if (options.http_port < 0 || options.http_port > 65535) {
    return Usage(parsed.Spelling("http-port") + " must be a TCP port (1-65535), or 0 for none");
  }
  config.http_port = options.http_port;
  auto ordering = kafka::ParseOrdering(options.ordering);
  if (!ordering.ok()) return Usage(parsed.Spelling("ordering") + " '" + options.ordering +
                                   "' is unknown: use key, partition or unordered");
  config.ordering = *ordering;
  config.retry_tiers.clear();
  for (const auto& value : options.retry_tiers) {
    std::string_view rest = value;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      auto delay = ParseDelay(rest.substr(0, comma), parsed.Spelling("retry-tier"));
      if (!delay.ok()) return delay.error();
      config.retry_tiers.push_back(*delay);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  // Validation names the option by its flag; report the spelling the user used.
  if (Status s = kafka::Validate(config); !s.ok()) {
    std::string message = s.error().message();
    for (const auto& name : parsed.from_env) {
      const std::string flag = "--" + name;
      if (auto at = message.find(flag + " "); at != std::string::npos) {
        message.replace(at, flag.size(), parsed.Spelling(name));
      }
    }
    return Usage(message);
  }
  return Ok();
}

Result<Header> ParseKeyValue(std::string_view spec, std::string_view flag) {
  const auto eq = spec.find('=');
  if (eq == std::string_view::npos) {
    return Usage(std::string(flag) + " '" + std::string(spec) + "': expected key=value");
  }
  if (eq == 0) {
    return Usage(std::string(flag) + " '" + std::string(spec) + "': the key before '=' is empty");
  }
  return Header{std::string(spec.substr(0, eq)), std::string(spec.substr(eq + 1))};
}

Result<std::map<std::string, std::string>> ParseProperties(const std::vector<std::string>& specs,
                                                           std::string_view flag) {
  std::map<std::string, std::string> out;
  for (const auto& spec : specs) {
    auto kv = ParseKeyValue(spec, flag);
    if (!kv.ok()) return kv.error();
    out[kv->name] = kv->value;
  }
  return out;
}

Result<TopicArg> ParseTopicSpec(std::string_view spec, std::string_view flag,
                                int default_partitions) {
  auto bad = [&](std::string_view why) {
    return Usage(std::string(flag) + " '" + std::string(spec) + "': " + std::string(why));
  };
  TopicArg out;
  const auto colon = spec.rfind(':');
  out.name = std::string(spec.substr(0, colon));
  if (out.name.empty()) return bad("expected NAME[:PARTITIONS]");
  if (colon == std::string_view::npos) {
    out.partitions = default_partitions;
    return out;
  }
  const std::string_view count = spec.substr(colon + 1);
  const auto [end, ec] = std::from_chars(count.data(), count.data() + count.size(), out.partitions);
  if (count.empty() || ec != std::errc() || end != count.data() + count.size() ||
      out.partitions < 1) {
    return bad("PARTITIONS after ':' must be a positive integer");
  }
  return out;
}

std::string MaskSecrets(std::string text, const std::map<std::string, std::string>& properties) {
  for (const auto& [name, value] : properties) {
    if (value.empty() || !kafka::IsSecretProperty(name)) continue;
    for (auto at = text.find(value); at != std::string::npos; at = text.find(value, at + 3)) {
      text.replace(at, value.size(), "***");
    }
  }
  return text;
}

namespace {
std::string g_program = "kbus";

std::string Who(std::string_view command) {
  return command.empty() ? g_program : g_program + " " + std::string(command);
}
}  // namespace

void SetProgramName(std::string_view program) { g_program = std::string(program); }

int ReportUsage(std::string_view command, std::string_view message) {
  std::cerr << Who(command) << ": " << message << " (see `" << Who(command) << " --help`)"
            << std::endl;
  return kExitUsage;
}

int Report(std::string_view command, const Error& error) {
  if (error.code() == ErrorCode::kInvalidArgument) return ReportUsage(command, error.message());
  std::cerr << Who(command) << ": " << error.ToString() << std::endl;
  return kExitFailure;
}

void PrintHelp(std::ostream& os, std::string_view usage, std::string_view summary,
               const po::options_description& visible) {
  os << "Usage: " << usage << "\n\n"
     << summary << "\n\n"
     << visible
     << "\nEvery option can also come from the environment as KBUS_<NAME>: --brokers from\n"
        "KBUS_BROKERS, --log-level from KBUS_LOG_LEVEL. A flag on the command line wins.\n";
}

void InstallStopSignals() {
  struct sigaction action = {};
  action.sa_handler = &OnStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool StopRequested() { return g_stop.load(); }

void InstallTwoStepStopSignals() {
  struct sigaction action = {};
  action.sa_handler = &OnTwoStepStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

void StopWorkerOnSignal(kafka::Worker* worker) {
  g_worker.store(worker);
  // A signal that came before the worker was there stops it now.
  if (worker != nullptr && g_stop.load()) worker->Stop();
}

}  // namespace kbus::cli
