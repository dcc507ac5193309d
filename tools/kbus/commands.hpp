#pragma once
// The kbus subcommands. Each lives in its own .cpp and takes its arguments without the command
// words ("kbus topics create a b" runs RunTopicsCreate({"a", "b"})). Results go to stdout, errors
// and library logs to stderr; the exit code is 0, kExitFailure or kExitUsage
// (kbus/cli/options.hpp).

#include <ostream>
#include <string>
#include <vector>

namespace kbus::cli {

int RunBroker(const std::vector<std::string>& args);
void PrintBrokerHelp(std::ostream& os);
int RunConsole(const std::vector<std::string>& args);
void PrintConsoleHelp(std::ostream& os);
int RunSend(const std::vector<std::string>& args);
void PrintSendHelp(std::ostream& os);
int RunTail(const std::vector<std::string>& args);
void PrintTailHelp(std::ostream& os);
int RunWatch(const std::vector<std::string>& args);
void PrintWatchHelp(std::ostream& os);
int RunWorkflows(const std::vector<std::string>& args);
void PrintWorkflowsHelp(std::ostream& os);
int RunTopicsCreate(const std::vector<std::string>& args);
void PrintTopicsCreateHelp(std::ostream& os);
int RunTopicsList(const std::vector<std::string>& args);
void PrintTopicsListHelp(std::ostream& os);
int RunDlqList(const std::vector<std::string>& args);
void PrintDlqListHelp(std::ostream& os);
int RunDlqShow(const std::vector<std::string>& args);
void PrintDlqShowHelp(std::ostream& os);
int RunHealth(const std::vector<std::string>& args);
void PrintHealthHelp(std::ostream& os);
int RunDlqRedrive(const std::vector<std::string>& args);
void PrintDlqRedriveHelp(std::ostream& os);
int RunSchedulesCreate(const std::vector<std::string>& args);
void PrintSchedulesCreateHelp(std::ostream& os);
int RunSchedulesList(const std::vector<std::string>& args);
void PrintSchedulesListHelp(std::ostream& os);
int RunSchedulesDescribe(const std::vector<std::string>& args);
void PrintSchedulesDescribeHelp(std::ostream& os);
int RunSchedulesPause(const std::vector<std::string>& args);
void PrintSchedulesPauseHelp(std::ostream& os);
int RunSchedulesResume(const std::vector<std::string>& args);
void PrintSchedulesResumeHelp(std::ostream& os);
int RunSchedulesTrigger(const std::vector<std::string>& args);
void PrintSchedulesTriggerHelp(std::ostream& os);
int RunSchedulesBackfill(const std::vector<std::string>& args);
void PrintSchedulesBackfillHelp(std::ostream& os);
int RunSchedulesDelete(const std::vector<std::string>& args);
void PrintSchedulesDeleteHelp(std::ostream& os);
int RunDelayedList(const std::vector<std::string>& args);
void PrintDelayedListHelp(std::ostream& os);
int RunDelayedCancel(const std::vector<std::string>& args);
void PrintDelayedCancelHelp(std::ostream& os);

}  // namespace kbus::cli
