#pragma once
// VideoEndings: how each video of a test ended, as a consumer group of the test process sees
// the video workflow's results. Shared by the video integration tests (video_test.cpp) and the
// workflow robustness suites (test/robustness/workflow_rig.hpp), which start the workflow in
// threads or in processes but judge its endings alike.
//
// An ending is "encoded:<attempts>" for a VideoEncoded event, "thumbnail:<attempts>" for a
// ThumbnailMade event (the video example's second workflow, under the video's id), or
// "dlq:<reason>:<attempts>:<outcome>" for the EncodeVideo command's dead-letter record
// (kbus-dlq-reason, kbus-dlq-attempts, and the launcher outcome DelegatedCommand puts in
// kbus-dlq-outcome). An ending sent again with the message id of its first copy (a host that
// died after sending it, before committing what caused it) is counted and dropped, as a
// receiver drops it; a copy that says something else is kept, as a second ending.
//
// Thread safety: every member may be called from any thread; the handlers run on the worker's
// threads.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "it_support.hpp"
#include "kbus/dead_letter.hpp"
#include "messages.hpp"

namespace video_test {

class VideoEndings {
 public:
  // Watches `events_topic` (VideoEncoded, VideoEncodingFailed) and the workflow host's
  // dead-letter topic `dlq_topic`, in a group of its own.
  VideoEndings(const std::string& events_topic, const std::string& dlq_topic) {
    handlers_.Handle<video::VideoEncoded>(
        [this](const video::VideoEncoded& e, kbus::Context& ctx) {
          End(e.video_id, ctx, "encoded:" + std::to_string(e.attempts));
        },
        {.topic = events_topic});
    handlers_.Handle<video::ThumbnailMade>(
        [this](const video::ThumbnailMade& e, kbus::Context& ctx) {
          End(e.video_id, ctx, "thumbnail:" + std::to_string(e.attempts));
        },
        {.topic = events_topic});
    handlers_.Handle<video::VideoEncodingFailed>(
        [this](const video::VideoEncodingFailed& e, kbus::Context&) {
          std::lock_guard lock(mu_);
          ++failed_events_[e.video_id];
        },
        {.topic = events_topic});
    handlers_.Handle<video::EncodeVideo>(
        [this, dlq_topic](const video::EncodeVideo& v, kbus::Context& ctx) {
          if (ctx.record().topic != dlq_topic) return;  // a command, not its dead letter
          const auto header = [&](std::string_view name) {
            return std::string(ctx.record().FindHeader(name).value_or(""));
          };
          End(v.video_id, ctx,
              "dlq:" + header(kbus::header::kDlqReason) + ":" + header(kbus::header::kDlqAttempts) + ":" +
                  header("kbus-dlq-outcome"));
        },
        {.topic = dlq_topic});
    worker_ = std::make_unique<it::RunningWorker>(
        it::WorkerConfigFor(kbus::test::TestBroker::UniqueName("video-endings")), handlers_);
  }
  VideoEndings(const VideoEndings&) = delete;
  VideoEndings& operator=(const VideoEndings&) = delete;

  // How many videos ended (at least once).
  std::size_t Ended() {
    std::lock_guard lock(mu_);
    return endings_.size();
  }
  // Waits until `n` videos ended or `timeout` passed, then every ending per video.
  std::map<std::string, std::vector<std::string>> Wait(std::size_t n, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return endings_.size() >= n; });
    return endings_;
  }
  // Waits until `n` distinct endings in all (a video may have several) or `timeout`, then
  // every ending per video.
  std::map<std::string, std::vector<std::string>> WaitForEndings(std::size_t n, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return distinct_ >= n; });
    return endings_;
  }
  // Waits until nothing new ended for `quiet` (late copies would show up), then every ending
  // per video.
  std::map<std::string, std::vector<std::string>> Settle(std::chrono::milliseconds quiet) {
    std::unique_lock lock(mu_);
    for (;;) {
      const std::size_t before = events_;
      if (!cv_.wait_for(lock, quiet, [&] { return events_ != before; })) return endings_;
    }
  }
  // VideoEncodingFailed events seen for `video`: published beside its dead letter.
  int FailedEvents(const std::string& video) {
    std::lock_guard lock(mu_);
    auto it = failed_events_.find(video);
    return it == failed_events_.end() ? 0 : it->second;
  }
  // Copies of an ending already seen (same message id, same content), dropped.
  int RepeatedEndings() {
    std::lock_guard lock(mu_);
    return repeated_endings_;
  }

 private:
  void End(const std::string& video, const kbus::Context& ctx, std::string what) {
    const std::string message_id(ctx.record().FindHeader(kbus::header::kId).value_or(""));
    std::lock_guard lock(mu_);
    auto [it, first] = ending_ids_.emplace(message_id, what);
    if (!first && !message_id.empty() && it->second == what) {
      ++repeated_endings_;
    } else {
      endings_[video].push_back(std::move(what));
      ++distinct_;
    }
    ++events_;
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::vector<std::string>> endings_;  // distinct endings per video
  std::map<std::string, std::string> ending_ids_;             // message id -> what it said
  std::map<std::string, int> failed_events_;
  int repeated_endings_ = 0;
  std::size_t events_ = 0;  // endings seen, copies included: what Settle waits on
  std::size_t distinct_ = 0;  // endings kept, in all videos
  kbus::HandlerRegistry handlers_;
  std::unique_ptr<it::RunningWorker> worker_;  // last: stopped before the rest is destroyed
};

}  // namespace video_test
