// kbus health: asks a kbus program's operations port (docs/operations.md) how it is. Made for
// container health checks, which run it inside the container: `kbus health` alone asks
// 127.0.0.1:$KBUS_HTTP_PORT/readyz.

#include <iostream>

#include "commands.hpp"
#include "kbus/cli/options.hpp"
#include "kbus/ops/server.hpp"

namespace kbus::cli {

namespace {

constexpr std::string_view kCommand = "health";
constexpr std::string_view kUsage = "kbus health [--http-port PORT] [--path /readyz|/healthz|/metrics] [--host H]";
constexpr std::string_view kSummary =
    "GETs a path of a kbus program's operations port and prints the answer's body.\n"
    "Exit 0 when it answered 200, 1 otherwise (not ready, not live, or nothing listening).";

struct Args {
  int port = 0;
  std::string path = "/readyz";
  std::string host = "127.0.0.1";
};

po::options_description Describe(Args& args) {
  po::options_description desc("kbus health options", kHelpWidth, kHelpWidth / 2);
  desc.add_options()("help,h", "show this help")(
      "http-port", po::value(&args.port)->value_name("PORT"),
      "the program's operations port (KBUS_HTTP_PORT, as the program itself reads it)")(
      "path", po::value(&args.path)->default_value(args.path)->value_name("PATH"),
      "what to ask: /readyz (ready to work), /healthz (alive) or /metrics")(
      "host", po::value(&args.host)->default_value(args.host)->value_name("HOST"),
      "where the program runs");
  return desc;
}

}  // namespace

void PrintHealthHelp(std::ostream& os) {
  Args args;
  PrintHelp(os, kUsage, kSummary, Describe(args));
}

int RunHealth(const std::vector<std::string>& args) {
  Args a;
  const auto desc = Describe(a);
  auto parsed = ParseArgs(args, desc);
  if (!parsed.ok()) return Report(kCommand, parsed.error());
  if (parsed->help()) {
    PrintHealthHelp(std::cout);
    return kExitOk;
  }
  if (a.port < 1 || a.port > 65535) {
    return ReportUsage(kCommand, parsed->vm.count("http-port") ? parsed->Spelling("http-port") + " must be a TCP port (1-65535)"
                                                               : "--http-port (or KBUS_HTTP_PORT) is required");
  }
  if (a.path.empty() || a.path[0] != '/') {
    return ReportUsage(kCommand, parsed->Spelling("path") + " must start with '/'");
  }
  const auto r = ops::Get(a.host, a.port, a.path);
  if (r.status == 0) {
    std::cerr << "kbus health: nothing answered on " << a.host << ":" << a.port << a.path << " (" << r.error
              << ")\n";
    return kExitFailure;
  }
  std::cout << r.body;
  if (!r.body.empty() && r.body.back() != '\n') std::cout << "\n";
  return r.status == 200 ? kExitOk : kExitFailure;
}

}  // namespace kbus::cli
