#pragma once
// Test media made and checked by the real ffmpeg and ffprobe (FFMPEG_PATH and FFPROBE_PATH, found
// by CMake): a few seconds of ffmpeg's test pattern, a corrupt file, and the height of a video.
// They run through kbus::handlers::RunProcess, so the including target links kbus::handlers.
//
// Thread safety: the functions may run on any thread; a MediaDir belongs to one test.

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "kbus/handlers/process.hpp"

namespace kbus::test {

// A fresh directory under the system's temporary directory, removed with what it holds.
class MediaDir {
 public:
  explicit MediaDir(const std::string& tag) {
    std::string name = (std::filesystem::temp_directory_path() / ("kbus-" + tag + "-XXXXXX")).string();
    if (::mkdtemp(name.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + name);
    path_ = name;
  }
  ~MediaDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  MediaDir(const MediaDir&) = delete;
  MediaDir& operator=(const MediaDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& file) const { return (path_ / file).string(); }

 private:
  std::filesystem::path path_;
};

// Runs a media tool to its end (at most a minute); throws with its stderr when it fails.
inline void RunMediaTool(const std::string& path, std::vector<std::string> args) {
  handlers::ProcessSpec spec;
  spec.path = path;
  spec.args = std::move(args);
  spec.run_timeout = std::chrono::minutes(1);
  const handlers::ProcessResult r = handlers::RunProcess(spec);
  if (r.outcome != handlers::ProcessOutcome::kSucceeded) {
    throw std::runtime_error(path + " " + std::string(handlers::OutcomeName(r.outcome)) + " (exit " +
                             std::to_string(r.exit_code) + "): " + r.error + r.stderr_tail);
  }
}

// `seconds` of ffmpeg's test pattern at `path`: 320x240, 25 frames a second, H.264 in MP4.
inline void MakeTestVideo(const std::string& path, int seconds) {
  RunMediaTool(FFMPEG_PATH, {"-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                             "testsrc=duration=" + std::to_string(seconds) + ":size=320x240:rate=25", "-c:v",
                             "libx264", "-pix_fmt", "yuv420p", "file:" + path});
}

// 64 KiB of random bytes named like a video: no demuxer takes it.
inline void MakeCorruptVideo(const std::string& path) {
  std::mt19937 random(7);
  std::string bytes(64 * 1024, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  std::ofstream(path, std::ios::binary) << bytes;
}

// The height of the first video stream of `path`, as ffprobe reads it. Throws when ffprobe
// cannot read the file.
inline int ProbeHeight(const std::string& path) {
  const std::string out = path + ".height";
  RunMediaTool(FFPROBE_PATH, {"-v", "error", "-select_streams", "v:0", "-show_entries", "stream=height", "-of",
                              "csv=p=0", "-o", out, "file:" + path});
  std::ifstream in(out);
  int height = -1;
  in >> height;
  std::filesystem::remove(out);
  return height;
}

}  // namespace kbus::test
