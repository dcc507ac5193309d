// kbus schedules create / list / describe / pause / resume / trigger / backfill / delete:
// recurring schedules, as their owner (a kbus-scheduler) keeps them in the schedules topic
// (kbus/schedules/client.hpp, docs/schedules.md).
//
// A change is a request written to the schedules topic; the owner applies it once and answers
// with the schedule's new snapshot, which the command waits for (--wait-ms). With no scheduler
// running the request stays in the topic and is applied when one starts: the command says so
// and exits 1. list and describe read the topic to its end without joining a group.
// Thread safety: everything runs on the main thread.

#include <algorithm>
#include <chrono>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <stdexcept>


#include "commands.hpp"
#include "stdin_payload.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/json.hpp"
#include "kbus/kafka/producer.hpp"
#include "kbus/schedules/client.hpp"
#include "schedule_format.hpp"

namespace kbus::cli {

namespace {

using schedules::Answer;
using schedules::Request;
using schedules::ScheduleSpec;
using schedules::ScheduleView;
using schedules::TimePoint;
using std::chrono::milliseconds;

constexpr std::string_view kCreate = "schedules create";
constexpr std::string_view kList = "schedules list";
constexpr std::string_view kDescribe = "schedules describe";
constexpr std::string_view kPause = "schedules pause";
constexpr std::string_view kResume = "schedules resume";
constexpr std::string_view kTrigger = "schedules trigger";
constexpr std::string_view kBackfill = "schedules backfill";
constexpr std::string_view kDelete = "schedules delete";

constexpr std::string_view kChangeNote =
    "The owner of the schedule (a kbus-scheduler) applies the request and answers; the command\n"
    "waits --wait-ms for that answer. No answer: the request waits in the schedules topic and\n"
    "is applied when a scheduler runs.";

TimePoint Now() { return std::chrono::time_point_cast<milliseconds>(std::chrono::system_clock::now()); }

// The options of every schedules command: where the schedules live and how to reach them.
struct TopicArgs {
  ClientOptions client;
  std::string topic = std::string(schedules::kDefaultSchedulesTopic);
};

void AddTopic(po::options_description& desc, TopicArgs& args) {
  desc.add_options()("help,h", "show this help");
  AddClientOptions(desc, args.client);
  desc.add_options()("schedules-topic", po::value(&args.topic)->default_value(args.topic)->value_name("TOPIC"),
                     "where schedules live (the scheduler's --schedules-topic)");
}

// Options of the commands that change a schedule.
struct ChangeArgs {
  TopicArgs topic;
  long long wait_ms = 10000;
  bool no_wait = false;
};

void AddChange(po::options_description& desc, ChangeArgs& args) {
  AddTopic(desc, args.topic);
  desc.add_options()("wait-ms", po::value(&args.wait_ms)->default_value(args.wait_ms)->value_name("MS"),
                     "how long to wait for the scheduler's answer")(
      "no-wait", po::bool_switch(&args.no_wait), "send the request and exit without waiting for the answer");
}

// Options of the commands that read the schedules topic.
struct ReadArgs {
  TopicArgs topic;
  long long timeout_ms = 30000;
  bool json = false;
};

void AddRead(po::options_description& desc, ReadArgs& args) {
  AddTopic(desc, args.topic);
  desc.add_options()("timeout-ms", po::value(&args.timeout_ms)->default_value(args.timeout_ms)->value_name("MS"),
                     "how long reading the topic may take")(
      "json", po::bool_switch(&args.json), "print JSON (a line per schedule) instead of text");
}

Status ApplyTopic(const TopicArgs& args, const ParsedArgs& parsed, std::string_view command,
                  kafka::ClientConfig& client) {
  if (Status s = ApplyClientOptions(args.client, parsed, command, client); !s.ok()) return s;
  if (args.topic.empty()) {
    return Error(ErrorCode::kInvalidArgument, parsed.Spelling("schedules-topic") + " is empty: name a topic");
  }
  return Ok();
}

// A library error; refused -X values may quote a secret.
int Fail(std::string_view command, const Error& error, const kafka::ClientConfig& client) {
  return Report(command, Error(error.code(), MaskSecrets(error.message(), client.properties), error.retriable()));
}

// The remedy for a schedules topic that does not exist.
Error MissingTopic(const Error& error, const std::string& topic) {
  if (error.code() != ErrorCode::kNotFound) return error;
  return Error(ErrorCode::kNotFound, "the schedules topic '" + topic +
                                         "' does not exist: create it (compacted) before starting kbus-scheduler, "
                                         "or name the scheduler's topic with --schedules-topic");
}

// "kbus <command>: <why>" on stderr; returns `exit_code`.
int Refused(std::string_view command, const std::string& why, int exit_code) {
  std::cerr << "kbus " << command << ": refused by the scheduler: " << why << std::endl;
  return exit_code;
}

// Sends `request` for `schedule_id`, waits for the owner's answer and, when it applied the
// request, calls `applied`. A refusal exits with `refused_exit`.
int SendAndAwait(std::string_view command, const kafka::ClientConfig& client, const ChangeArgs& args,
                 const std::string& schedule_id, Request request, int refused_exit,
                 const std::function<void(const Answer&)>& applied) {
  const std::string& topic = args.topic.topic;
  try {
    // The end before the request: the answer comes after it.
    auto from = schedules::EndOffsets(client, topic);
    if (!from.ok()) return Fail(command, MissingTopic(from.error(), topic), client);
    kafka::ProducerConfig config;
    config.client = client;
    kafka::Producer producer(config);
    auto request_id = schedules::SendRequest(producer, schedule_id, std::move(request), topic);
    if (!request_id.ok()) return Fail(command, request_id.error(), client);
    if (args.no_wait) {
      std::cout << "request " << *request_id << " sent for schedule '" << schedule_id << "'" << std::endl;
      return kExitOk;
    }
    auto answer = schedules::Await(client, schedule_id, *request_id, *from, milliseconds(args.wait_ms), topic);
    if (!answer.ok()) return Fail(command, answer.error(), client);
    if (!answer->applied) return Refused(command, answer->refused, refused_exit);
    applied(*answer);
    return kExitOk;
  } catch (const std::invalid_argument& e) {
    // A -X property librdkafka refused; its message may quote the value.
    return ReportUsage(command, MaskSecrets(e.what(), client.properties));
  } catch (const std::exception& e) {
    return Report(command, Error(ErrorCode::kTransport, MaskSecrets(e.what(), client.properties)));
  }
}

Status CheckChange(const ChangeArgs& args, const ParsedArgs& parsed) {
  if (args.wait_ms < 1) return Error(ErrorCode::kInvalidArgument, parsed.Spelling("wait-ms") + " must be positive");
  return Ok();
}

std::string NextText(const ScheduleSpec& spec) {
  const auto next = schedules::NextFireTimes(spec, Now(), 1);
  return next.empty() ? std::string("none") : FormatTime(next.front());
}

// --- create ---

struct CreateArgs {
  ChangeArgs change;
  std::string id;
  std::string cron;
  std::string every;
  std::string time_zone = "UTC";
  std::string jitter;
  std::string start;
  std::string end;
  std::string type;
  std::string topic;
  std::string key;
  std::string payload;
  std::vector<std::string> headers;
  std::string overlap = "skip";
  std::string catch_up_window;
  std::string catch_up = "all";
  std::vector<std::string> ends_on;
  std::string run_timeout;
  bool paused = false;
  std::string note;
};

po::options_description DescribeCreate(CreateArgs& args) {
  po::options_description desc("kbus schedules create options", kHelpWidth, kHelpWidth / 2);
  AddChange(desc, args.change);
  desc.add_options()("id", po::value(&args.id), "the schedule's name (required; no '/')")(
      "cron", po::value(&args.cron)->value_name("EXPR"),
      "5-field cron expression, e.g. '0 2 * * *' or @daily, read in --time-zone")(
      "every", po::value(&args.every)->value_name("D"), "a fixed interval instead: 30s, 5m, 1h, 2d")(
      "time-zone", po::value(&args.time_zone)->default_value(args.time_zone)->value_name("TZ"),
      "IANA zone of the cron expression, e.g. Europe/Paris")(
      "jitter", po::value(&args.jitter)->value_name("D"),
      "fire each tick up to D late, the same delay for the same tick (default 0)")(
      "start", po::value(&args.start)->value_name("TIME"), "no tick before TIME (ISO 8601 with its offset)")(
      "end", po::value(&args.end)->value_name("TIME"), "no tick after TIME")(
      "type", po::value(&args.type), "the command's type (required)")(
      "topic", po::value(&args.topic), "the command's topic (required)")(
      "key", po::value(&args.key), "the command's record key (default: the run's correlation id)")(
      "payload", po::value(&args.payload)->value_name("JSON"),
      "the command's payload (default {}); - reads it from stdin. ${schedule}, ${tick} and ${run} "
      "are replaced at each tick")(
      "header", po::value(&args.headers)->value_name("name=value"), "an extra header; repeatable")(
      "overlap", po::value(&args.overlap)->default_value(args.overlap)->value_name("P"),
      "a tick while a run is running: skip, buffer_one, allow_all or cancel_other")(
      "catch-up-window", po::value(&args.catch_up_window)->value_name("D"),
      "missed ticks younger than D fire after downtime (default 1m; 0: none)")(
      "catch-up", po::value(&args.catch_up)->default_value(args.catch_up)->value_name("C"),
      "which of those fire: all or latest")(
      "ends-on", po::value(&args.ends_on)->value_name("TYPE"),
      "an event type that ends a run (it carries the run's correlation id); repeatable")(
      "run-timeout", po::value(&args.run_timeout)->value_name("D"),
      "a run with no ending event after D counts as timed out (default 1h)")(
      "paused", po::bool_switch(&args.paused), "create it paused")(
      "note", po::value(&args.note)->value_name("TEXT"), "why it is paused, for people");
  return desc;
}

constexpr std::string_view kCreateUsage =
    "kbus schedules create --brokers B --id ID (--cron EXPR | --every D) --type T --topic TOPIC [options]";

// "0" for none, else as ParseDelay reads it.
Result<milliseconds> ParseDuration(const std::string& spec, const std::string& flag) {
  if (spec == "0") return milliseconds(0);
  return ParseDelay(spec, flag);
}


Result<ScheduleSpec> BuildSpec(const CreateArgs& args, const ParsedArgs& parsed) {
  auto usage = [](std::string why) { return Error(ErrorCode::kInvalidArgument, std::move(why)); };
  ScheduleSpec spec;
  if (args.id.empty()) return usage("--id is required: the schedule's name");
  spec.id = args.id;
  if (args.cron.empty() == args.every.empty()) return usage("give --cron or --every, one of them");
  spec.cron = args.cron;
  if (!args.every.empty()) {
    auto every = ParseDelay(args.every, parsed.Spelling("every"));
    if (!every.ok()) return every.error();
    spec.every = *every;
  }
  spec.time_zone = args.time_zone;
  if (!args.jitter.empty()) {
    auto jitter = ParseDuration(args.jitter, parsed.Spelling("jitter"));
    if (!jitter.ok()) return jitter.error();
    spec.jitter = *jitter;
  }
  if (!args.start.empty()) {
    auto start = ParseTime(args.start, parsed.Spelling("start"));
    if (!start.ok()) return start.error();
    spec.start = *start;
  }
  if (!args.end.empty()) {
    auto end = ParseTime(args.end, parsed.Spelling("end"));
    if (!end.ok()) return end.error();
    spec.end = *end;
  }
  if (args.type.empty()) return usage("--type is required: the type of the command each tick sends");
  if (args.topic.empty()) return usage("--topic is required: where each tick's command goes");
  spec.type = args.type;
  spec.topic = args.topic;
  spec.key = args.key;
  if (parsed.vm.count("payload") != 0) {
    if (args.payload == "-") {
      auto in = ReadPayloadFromStdin();
      if (!in.ok()) return in.error();
      spec.payload = std::move(in.value());
    } else {
      spec.payload = args.payload;
    }
  }
  for (const auto& h : args.headers) {
    auto header = ParseKeyValue(h, parsed.Spelling("header"));
    if (!header.ok()) return header.error();
    spec.headers.push_back(std::move(header.value()));
  }
  auto overlap = schedules::ParseOverlap(args.overlap);
  if (!overlap.ok()) {
    return usage(parsed.Spelling("overlap") + " '" + args.overlap +
                 "' is not one of skip, buffer_one, allow_all, cancel_other");
  }
  spec.overlap = *overlap;
  if (!args.catch_up_window.empty()) {
    auto window = ParseDuration(args.catch_up_window, parsed.Spelling("catch-up-window"));
    if (!window.ok()) return window.error();
    spec.catch_up_window = *window;
  }
  auto catch_up = schedules::ParseCatchUp(args.catch_up);
  if (!catch_up.ok()) return usage(parsed.Spelling("catch-up") + " '" + args.catch_up + "' is not one of all, latest");
  spec.catch_up = *catch_up;
  spec.ends_on = args.ends_on;
  if (!args.run_timeout.empty()) {
    auto timeout = ParseDelay(args.run_timeout, parsed.Spelling("run-timeout"));
    if (!timeout.ok()) return timeout.error();
    spec.run_timeout = *timeout;
  }
  spec.paused = args.paused;
  spec.note = args.note;
  // The library's message names the field (cron, time_zone, payload...): the flag's name
  // but for '_' in place of '-'.
  if (Status s = schedules::Validate(spec); !s.ok()) return usage(s.error().message());
  return spec;
}

// --- the single-schedule commands ---

struct IdArgs {
  ChangeArgs change;
  std::string id;
  std::string note;  // pause
  std::string from;  // backfill
  std::string to;    // backfill
};

enum class IdCommand { kPause, kResume, kTrigger, kBackfill, kDelete };

po::options_description DescribeId(IdArgs& args, IdCommand which, std::string_view title) {
  po::options_description desc(std::string(title), kHelpWidth, kHelpWidth / 2);
  AddChange(desc, args.change);
  if (which == IdCommand::kPause) {
    desc.add_options()("note", po::value(&args.note)->value_name("TEXT"), "why it is paused, for people");
  }
  if (which == IdCommand::kBackfill) {
    desc.add_options()("from", po::value(&args.from)->value_name("TIME"),
                       "ticks after TIME (ISO 8601 with its offset; required)")(
        "to", po::value(&args.to)->value_name("TIME"), "up to and including TIME (required)");
  }
  return desc;
}

struct IdCommandInfo {
  std::string_view command;
  std::string_view usage;
  std::string_view summary;
  std::string_view title;
};

IdCommandInfo Info(IdCommand which) {
  switch (which) {
    case IdCommand::kPause:
      return {kPause, "kbus schedules pause --brokers B ID [--note TEXT]",
              "Pauses schedule ID: its ticks are recorded as paused and fire nothing until resumed.",
              "kbus schedules pause options"};
    case IdCommand::kResume:
      return {kResume, "kbus schedules resume --brokers B ID",
              "Resumes schedule ID from now: the ticks of the pause are not caught up. Prints its next\n"
              "fire time.",
              "kbus schedules resume options"};
    case IdCommand::kTrigger:
      return {kTrigger, "kbus schedules trigger --brokers B ID",
              "Fires schedule ID once now, as a tick at this time (its overlap policy applies; a paused\n"
              "schedule fires too). Prints the run's message id.",
              "kbus schedules trigger options"};
    case IdCommand::kBackfill:
      return {kBackfill, "kbus schedules backfill --brokers B ID --from TIME --to TIME",
              "Fires the ticks of schedule ID in (--from, --to], oldest first, under its overlap policy\n"
              "(it fires them whether or not the schedule is paused). Prints how many were queued; a\n"
              "range of more than 10000 ticks is refused (exit 1): ask for it in parts.",
              "kbus schedules backfill options"};
    case IdCommand::kDelete:
      return {kDelete, "kbus schedules delete --brokers B ID",
              "Deletes schedule ID and its history; runs under way are not cancelled.",
              "kbus schedules delete options"};
  }
  return {};
}

void PrintIdHelp(std::ostream& os, IdCommand which) {
  IdArgs args;
  const IdCommandInfo info = Info(which);
  PrintHelp(os, info.usage,
            std::string(info.summary) + "\n\n" + std::string(kChangeNote) +
                "\nExit codes: 0 applied, 1 refused (no such schedule) or no answer, 2 bad usage.",
            DescribeId(args, which, info.title));
}

// The run a trigger or backfill started: the latest record of `tick`.
const schedules::RunRecord* RunOf(const schedules::ScheduleState& state, TimePoint tick) {
  for (auto it = state.running.rbegin(); it != state.running.rend(); ++it) {
    if (it->tick == tick) return &*it;
  }
  for (auto it = state.recent.rbegin(); it != state.recent.rend(); ++it) {
    if (it->tick == tick) return &*it;
  }
  return nullptr;
}

int RunIdCommand(const std::vector<std::string>& argv, IdCommand which) {
  const IdCommandInfo info = Info(which);
  const std::string_view command = info.command;
  IdArgs args;
  const auto desc = DescribeId(args, which, info.title);
  po::options_description hidden;
  hidden.add_options()("schedule", po::value(&args.id));
  po::positional_options_description positional;
  positional.add("schedule", 1);
  auto parsed = ParseArgs(argv, desc, hidden, positional);
  if (!parsed.ok()) return Report(command, parsed.error());
  if (parsed->help()) {
    PrintIdHelp(std::cout, which);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyTopic(args.change.topic, *parsed, command, client); !s.ok()) return Report(command, s.error());
  if (Status s = CheckChange(args.change, *parsed); !s.ok()) return Report(command, s.error());
  if (args.id.empty()) return ReportUsage(command, "name the schedule: ID (as `kbus schedules list` prints it)");

  Request request;
  const std::string id = args.id;
  std::function<void(const Answer&)> applied;
  switch (which) {
    case IdCommand::kPause:
      request.op = Request::Op::kPause;
      request.note = args.note;
      applied = [id](const Answer&) { std::cout << "paused " << id << std::endl; };
      break;
    case IdCommand::kResume:
      request.op = Request::Op::kResume;
      applied = [id](const Answer& a) {
        std::cout << "resumed " << id;
        if (a.schedule) std::cout << ", next " << NextText(a.schedule->spec);
        std::cout << std::endl;
      };
      break;
    case IdCommand::kTrigger: {
      request.op = Request::Op::kTrigger;
      request.to = Now();
      const TimePoint tick = request.to;
      applied = [id, tick](const Answer& a) {
        std::cout << "triggered " << id << " at " << FormatTime(tick);
        if (const auto* run = a.schedule ? RunOf(a.schedule->state, tick) : nullptr) {
          std::cout << ": " << run->outcome;
          if (!run->message_id.empty()) std::cout << ", run " << run->message_id;
        }
        std::cout << std::endl;
      };
      break;
    }
    case IdCommand::kBackfill: {
      if (args.from.empty() || args.to.empty()) return ReportUsage(command, "--from and --to are required");
      auto from = ParseTime(args.from, parsed->Spelling("from"));
      if (!from.ok()) return Report(command, from.error());
      auto to = ParseTime(args.to, parsed->Spelling("to"));
      if (!to.ok()) return Report(command, to.error());
      if (*to <= *from) {
        return ReportUsage(command, parsed->Spelling("to") + " must be after " + parsed->Spelling("from"));
      }
      request.op = Request::Op::kBackfill;
      request.from = *from;
      request.to = *to;
      applied = [id](const Answer& a) {
        const std::size_t queued = a.schedule ? a.schedule->state.backfill.size() : 0;
        std::cout << "backfill of " << id << ": " << queued << (queued == 1 ? " tick" : " ticks") << " queued"
                  << std::endl;
      };
      break;
    }
    case IdCommand::kDelete:
      request.op = Request::Op::kDelete;
      applied = [id](const Answer&) { std::cout << "deleted " << id << std::endl; };
      break;
  }
  return SendAndAwait(command, client, args.change, id, std::move(request), kExitFailure, applied);
}

// --- list and describe ---

constexpr std::string_view kListUsage = "kbus schedules list --brokers B [--json]";
constexpr std::string_view kListSummary =
    "Prints every schedule of the schedules topic, read to its end: id, calendar, next fire\n"
    "time, overlap policy, paused (and why), the last tick's outcome and the runs under way.\n"
    "--json prints a JSON object per line instead.";
constexpr std::string_view kDescribeUsage = "kbus schedules describe --brokers B ID [--json]";
constexpr std::string_view kDescribeSummary =
    "Prints schedule ID: its definition, its next 5 fire times (UTC), the runs under way, the\n"
    "buffered tick, the last runs with their outcomes and the requests not applied yet. Exit 1\n"
    "when there is no such schedule.";

struct ListArgs {
  ReadArgs read;
  std::string id;  // describe
};

po::options_description DescribeRead(ListArgs& args, std::string_view title) {
  po::options_description desc(std::string(title), kHelpWidth, kHelpWidth / 2);
  AddRead(desc, args.read);
  return desc;
}

std::string CalendarText(const ScheduleSpec& spec) {
  auto calendar = schedules::CalendarOf(spec);
  return calendar.ok() ? calendar->Describe() : "invalid: " + calendar.error().message();
}

std::string PausedText(const ScheduleSpec& spec) {
  if (!spec.paused) return "no";
  return spec.note.empty() ? "yes" : "yes: " + spec.note;
}

std::string LastText(const schedules::ScheduleState& state) {
  if (state.recent.empty()) return "-";
  const auto& last = state.recent.back();
  return last.outcome + " " + FormatTime(last.tick);
}

std::string_view OpName(Request::Op op) {
  switch (op) {
    case Request::Op::kPut:
      return "put";
    case Request::Op::kPause:
      return "pause";
    case Request::Op::kResume:
      return "resume";
    case Request::Op::kTrigger:
      return "trigger";
    case Request::Op::kBackfill:
      return "backfill";
    case Request::Op::kRunEnded:
      return "run_ended";
    case Request::Op::kDelete:
      return "delete";
  }
  return "?";
}

void WriteRun(JsonWriter& w, const schedules::RunRecord& r) {
  w.StartObject();
  w.Key("tick");
  w.String(FormatTime(r.tick));
  w.Key("outcome");
  w.String(r.outcome);
  w.Key("message_id");
  w.String(r.message_id);
  w.Key("at");
  w.String(FormatTime(r.at));
  if (!r.job_id.empty()) {
    w.Key("job_id");
    w.String(r.job_id);
  }
  w.EndObject();
}

std::string ListLine(const ScheduleView& v) {
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartObject();
  w.Key("id");
  w.String(v.spec.id);
  w.Key("calendar");
  w.String(CalendarText(v.spec));
  w.Key("next");
  const auto next = schedules::NextFireTimes(v.spec, Now(), 1);
  if (next.empty()) {
    w.Null();
  } else {
    w.String(FormatTime(next.front()));
  }
  w.Key("overlap");
  w.String(schedules::OverlapName(v.spec.overlap));
  w.Key("paused");
  w.Bool(v.spec.paused);
  w.Key("note");
  w.String(v.spec.note);
  w.Key("last");
  if (v.state.recent.empty()) {
    w.Null();
  } else {
    WriteRun(w, v.state.recent.back());
  }
  w.Key("running");
  w.Uint64(v.state.running.size());
  w.Key("waiting");
  w.Uint64(v.waiting.size());
  w.EndObject();
  return w.Take();
}

Result<std::vector<ScheduleView>> Load(const ReadArgs& args, const kafka::ClientConfig& client) {
  auto views = schedules::ListSchedules(client, args.topic.topic, milliseconds(args.timeout_ms));
  if (!views.ok()) return MissingTopic(views.error(), args.topic.topic);
  return views;
}

// Reads the options of list and describe; nullopt: the exit code is in `exit_code`.
std::optional<kafka::ClientConfig> ParseRead(const std::vector<std::string>& argv, std::string_view command,
                                             ListArgs& args, const po::options_description& desc,
                                             void (*help)(std::ostream&), bool takes_id, int& exit_code) {
  po::options_description hidden;
  po::positional_options_description positional;
  if (takes_id) {
    hidden.add_options()("schedule", po::value(&args.id));
    positional.add("schedule", 1);
  }
  auto parsed = ParseArgs(argv, desc, hidden, positional);
  if (!parsed.ok()) {
    exit_code = Report(command, parsed.error());
    return std::nullopt;
  }
  if (parsed->help()) {
    help(std::cout);
    exit_code = kExitOk;
    return std::nullopt;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyTopic(args.read.topic, *parsed, command, client); !s.ok()) {
    exit_code = Report(command, s.error());
    return std::nullopt;
  }
  if (args.read.timeout_ms < 1) {
    exit_code = ReportUsage(command, parsed->Spelling("timeout-ms") + " must be positive");
    return std::nullopt;
  }
  if (takes_id && args.id.empty()) {
    exit_code = ReportUsage(command, "name the schedule: ID (as `kbus schedules list` prints it)");
    return std::nullopt;
  }
  return client;
}

void PrintDescription(std::ostream& os, const ScheduleView& v) {
  const ScheduleSpec& s = v.spec;
  std::vector<std::vector<std::string>> rows;
  auto row = [&](std::string name, std::string value) { rows.push_back({std::move(name), std::move(value)}); };
  auto optional_time = [](const std::optional<TimePoint>& t) { return t ? FormatTime(*t) : std::string("-"); };
  row("id", s.id);
  row("calendar", CalendarText(s));
  if (!s.cron.empty()) row("cron", s.cron);
  if (s.every.count() > 0) row("every", FormatDuration(s.every));
  row("time_zone", s.time_zone);
  row("jitter", FormatDuration(s.jitter));
  row("start", optional_time(s.start));
  row("end", optional_time(s.end));
  row("type", s.type);
  row("topic", s.topic);
  row("key", s.key.empty() ? "(the run's correlation id)" : s.key);
  row("payload", s.payload);
  for (const auto& h : s.headers) row("header", h.name + "=" + h.value);
  row("overlap", std::string(schedules::OverlapName(s.overlap)));
  row("catch_up_window", FormatDuration(s.catch_up_window));
  row("catch_up", std::string(schedules::CatchUpName(s.catch_up)));
  std::string ends_on;
  for (const auto& e : s.ends_on) ends_on += (ends_on.empty() ? "" : ", ") + e;
  row("ends_on", ends_on.empty() ? "-" : ends_on);
  row("run_timeout", FormatDuration(s.run_timeout));
  row("paused", PausedText(s));
  row("fired", std::to_string(v.state.fired));
  row("last_tick", optional_time(v.state.last_tick));
  row("buffered", optional_time(v.state.buffered));
  PrintTable(os, rows);

  os << "\nnext fire times (UTC" << (s.paused ? "; paused: they fire nothing until resumed" : "") << "):\n";
  const auto next = schedules::NextFireTimes(s, Now(), 5);
  if (next.empty()) os << "  none\n";
  for (const auto& t : next) os << "  " << FormatTime(t) << '\n';

  auto runs = [&](std::string_view title, const auto& list) {
    os << '\n' << title << " (" << list.size() << "):\n";
    if (list.empty()) return;
    std::vector<std::vector<std::string>> table{{"  TICK", "OUTCOME", "AT", "MESSAGE ID"}};
    for (const auto& r : list) {
      table.push_back(
          {"  " + FormatTime(r.tick), r.outcome, FormatTime(r.at), r.message_id.empty() ? "-" : r.message_id});
    }
    PrintTable(os, table);
  };
  runs("running", v.state.running);
  if (!v.state.backfill.empty()) {
    os << "\nbackfill queued (" << v.state.backfill.size() << "):\n";
    for (const auto& t : v.state.backfill) os << "  " << FormatTime(t) << '\n';
  }
  runs("last runs, newest last", v.state.recent);
  os << "\nrequests waiting (" << v.waiting.size() << "):\n";
  for (const auto& r : v.waiting) os << "  " << OpName(r.op) << "  " << r.id << '\n';
}

std::string DescribeJson(const ScheduleView& v) {
  JsonWriter w(InvalidUtf8::kReplace);
  w.StartObject();
  w.Key("spec");
  w.RawValue(schedules::EncodeSpec(v.spec));
  w.Key("calendar");
  w.String(CalendarText(v.spec));
  w.Key("next");
  w.StartArray();
  for (const auto& t : schedules::NextFireTimes(v.spec, Now(), 5)) w.String(FormatTime(t));
  w.EndArray();
  w.Key("running");
  w.StartArray();
  for (const auto& r : v.state.running) WriteRun(w, r);
  w.EndArray();
  w.Key("buffered");
  if (v.state.buffered) {
    w.String(FormatTime(*v.state.buffered));
  } else {
    w.Null();
  }
  w.Key("backfill");
  w.StartArray();
  for (const auto& t : v.state.backfill) w.String(FormatTime(t));
  w.EndArray();
  w.Key("recent");
  w.StartArray();
  for (const auto& r : v.state.recent) WriteRun(w, r);
  w.EndArray();
  w.Key("fired");
  w.Uint64(v.state.fired);
  w.Key("waiting");
  w.StartArray();
  for (const auto& r : v.waiting) {
    w.StartObject();
    w.Key("id");
    w.String(r.id);
    w.Key("op");
    w.String(OpName(r.op));
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return w.Take();
}

}  // namespace

void PrintSchedulesCreateHelp(std::ostream& os) {
  CreateArgs args;
  PrintHelp(os, kCreateUsage,
            "Creates or replaces schedule ID: each tick of its calendar sends one command of --type to\n"
            "--topic. The definition is checked here first (errors name the field). A replaced schedule\n"
            "keeps its pause and history. Prints the schedule's id and its next fire time.\n\n" +
                std::string(kChangeNote) +
                "\nExit codes: 0 applied, 1 no answer, 2 bad usage or a definition the scheduler\n"
                "refuses (a --type outside its --known-types).",
            DescribeCreate(args));
}

void PrintSchedulesListHelp(std::ostream& os) {
  ListArgs args;
  PrintHelp(os, kListUsage, kListSummary, DescribeRead(args, "kbus schedules list options"));
}

void PrintSchedulesDescribeHelp(std::ostream& os) {
  ListArgs args;
  PrintHelp(os, kDescribeUsage, kDescribeSummary, DescribeRead(args, "kbus schedules describe options"));
}

void PrintSchedulesPauseHelp(std::ostream& os) { PrintIdHelp(os, IdCommand::kPause); }
void PrintSchedulesResumeHelp(std::ostream& os) { PrintIdHelp(os, IdCommand::kResume); }
void PrintSchedulesTriggerHelp(std::ostream& os) { PrintIdHelp(os, IdCommand::kTrigger); }
void PrintSchedulesBackfillHelp(std::ostream& os) { PrintIdHelp(os, IdCommand::kBackfill); }
void PrintSchedulesDeleteHelp(std::ostream& os) { PrintIdHelp(os, IdCommand::kDelete); }

int RunSchedulesCreate(const std::vector<std::string>& argv) {
  CreateArgs args;
  const auto desc = DescribeCreate(args);
  auto parsed = ParseArgs(argv, desc);
  if (!parsed.ok()) return Report(kCreate, parsed.error());
  if (parsed->help()) {
    PrintSchedulesCreateHelp(std::cout);
    return kExitOk;
  }
  kafka::ClientConfig client;
  if (Status s = ApplyTopic(args.change.topic, *parsed, kCreate, client); !s.ok()) return Report(kCreate, s.error());
  if (Status s = CheckChange(args.change, *parsed); !s.ok()) return Report(kCreate, s.error());
  auto spec = BuildSpec(args, *parsed);
  if (!spec.ok()) return Report(kCreate, spec.error());
  const std::string id = spec->id;
  Request request;
  request.op = Request::Op::kPut;
  request.spec = std::move(spec.value());
  // A definition the owner refuses is invalid input, as one refused here is.
  return SendAndAwait(kCreate, client, args.change, id, std::move(request), kExitUsage, [&](const Answer& a) {
    std::cout << id << " next " << (a.schedule ? NextText(a.schedule->spec) : std::string("none"));
    if (a.schedule && a.schedule->spec.paused) std::cout << " (paused)";
    std::cout << std::endl;
  });
}

int RunSchedulesList(const std::vector<std::string>& argv) {
  ListArgs args;
  const auto desc = DescribeRead(args, "kbus schedules list options");
  int exit_code = kExitOk;
  auto client = ParseRead(argv, kList, args, desc, &PrintSchedulesListHelp, false, exit_code);
  if (!client) return exit_code;
  auto views = Load(args.read, *client);
  if (!views.ok()) return Fail(kList, views.error(), *client);
  if (args.read.json) {
    for (const auto& v : *views) std::cout << ListLine(v) << '\n';
    std::cout << std::flush;
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows{{"ID", "CALENDAR", "NEXT", "OVERLAP", "PAUSED", "LAST", "RUNNING"}};
  for (const auto& v : *views) {
    rows.push_back({v.spec.id, CalendarText(v.spec), NextText(v.spec),
                    std::string(schedules::OverlapName(v.spec.overlap)),
                    PausedText(v.spec), LastText(v.state), std::to_string(v.state.running.size())});
  }
  PrintTable(std::cout, rows);
  std::cout << std::flush;
  return kExitOk;
}

int RunSchedulesDescribe(const std::vector<std::string>& argv) {
  ListArgs args;
  const auto desc = DescribeRead(args, "kbus schedules describe options");
  int exit_code = kExitOk;
  auto client = ParseRead(argv, kDescribe, args, desc, &PrintSchedulesDescribeHelp, true, exit_code);
  if (!client) return exit_code;
  auto views = Load(args.read, *client);
  if (!views.ok()) return Fail(kDescribe, views.error(), *client);
  auto it = std::find_if(views->begin(), views->end(), [&](const ScheduleView& v) { return v.spec.id == args.id; });
  if (it == views->end()) {
    return Report(kDescribe,
                  Error(ErrorCode::kNotFound, "no schedule '" + args.id + "' in '" + args.read.topic.topic + "'"));
  }
  if (args.read.json) {
    std::cout << DescribeJson(*it) << std::endl;
  } else {
    PrintDescription(std::cout, *it);
    std::cout << std::flush;
  }
  return kExitOk;
}

int RunSchedulesPause(const std::vector<std::string>& argv) { return RunIdCommand(argv, IdCommand::kPause); }
int RunSchedulesResume(const std::vector<std::string>& argv) { return RunIdCommand(argv, IdCommand::kResume); }
int RunSchedulesTrigger(const std::vector<std::string>& argv) { return RunIdCommand(argv, IdCommand::kTrigger); }
int RunSchedulesBackfill(const std::vector<std::string>& argv) { return RunIdCommand(argv, IdCommand::kBackfill); }
int RunSchedulesDelete(const std::vector<std::string>& argv) { return RunIdCommand(argv, IdCommand::kDelete); }

}  // namespace kbus::cli
