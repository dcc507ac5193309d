#include "docker_engine.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "kbus/json.hpp"

namespace kbus::handlers::detail {

namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct EasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
using Easy = std::unique_ptr<CURL, EasyDeleter>;
struct ListDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using HeaderList = std::unique_ptr<curl_slist, ListDeleter>;
struct MultiDeleter {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};

std::size_t KeepBody(char* data, std::size_t size, std::size_t n, void* out) {
  auto* body = static_cast<std::string*>(out);
  const std::size_t bytes = size * n;
  const std::size_t room = Engine::kMaxReplyBytes - std::min(body->size(), Engine::kMaxReplyBytes);
  body->append(data, std::min(bytes, room));
  return bytes;
}

std::size_t PassOn(char* data, std::size_t size, std::size_t n, void* out) {
  (*static_cast<const std::function<void(std::string_view)>*>(out))({data, size * n});
  return size * n;
}

Easy Prepare(const std::string& socket, const std::string& url) {
  GlobalInit();
  Easy easy(curl_easy_init());
  if (!easy) return easy;
  curl_easy_setopt(easy.get(), CURLOPT_UNIX_SOCKET_PATH, socket.c_str());
  curl_easy_setopt(easy.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy.get(), CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  return easy;
}

Error TransportError(const std::string& socket, CURLcode code, const char* detail) {
  std::string what = detail != nullptr && *detail != '\0' ? detail : curl_easy_strerror(code);
  return {ErrorCode::kTransport, "the Docker engine at " + socket + " did not answer: " + what, true};
}

}  // namespace

std::string EngineReply::Message() const {
  JsonDocument doc;
  if (doc.Parse(body).ok() && doc.Root().IsObject()) {
    if (auto m = doc.Root().Find("message"); m && m->IsString()) return std::string(m->GetString());
  }
  return ToValidUtf8(body, 512);
}

Engine::Engine(std::string socket_path) : socket_(std::move(socket_path)) {}

std::string Engine::Url(std::string_view path) const {
  return "http://docker/" + std::string(kApiVersion) + std::string(path);
}

std::string Engine::Escape(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

Result<EngineReply> Engine::Call(std::string_view method, std::string_view path, std::string_view json_body,
                                 std::chrono::milliseconds timeout) const {
  Easy easy = Prepare(socket_, Url(path));
  if (!easy) return Error(ErrorCode::kInternal, "curl_easy_init failed");
  EngineReply reply;
  char detail[CURL_ERROR_SIZE] = {};
  const std::string body(json_body);
  HeaderList headers;
  curl_easy_setopt(easy.get(), CURLOPT_ERRORBUFFER, detail);
  curl_easy_setopt(easy.get(), CURLOPT_CUSTOMREQUEST, std::string(method).c_str());
  if (method == "POST" || !body.empty()) {
    headers.reset(curl_slist_append(nullptr, "Content-Type: application/json"));
    curl_easy_setopt(easy.get(), CURLOPT_HTTPHEADER, headers.get());
    curl_easy_setopt(easy.get(), CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(easy.get(), CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(easy.get(), CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(easy.get(), CURLOPT_WRITEFUNCTION, KeepBody);
  curl_easy_setopt(easy.get(), CURLOPT_WRITEDATA, &reply.body);
  if (CURLcode code = curl_easy_perform(easy.get()); code != CURLE_OK) return TransportError(socket_, code, detail);
  curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &reply.status);
  return reply;
}

Result<long> Engine::Stream(std::string_view path, const std::function<void(std::string_view)>& data,
                            const std::function<bool()>& poll, int wake_fd, std::chrono::milliseconds tick) const {
  Easy easy = Prepare(socket_, Url(path));
  std::unique_ptr<CURLM, MultiDeleter> multi(curl_multi_init());
  if (!easy || !multi) return Error(ErrorCode::kInternal, "curl init failed");
  char detail[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(easy.get(), CURLOPT_ERRORBUFFER, detail);
  curl_easy_setopt(easy.get(), CURLOPT_WRITEFUNCTION, PassOn);
  curl_easy_setopt(easy.get(), CURLOPT_WRITEDATA, &data);
  curl_multi_add_handle(multi.get(), easy.get());
  CURLcode done = CURLE_OK;
  bool finished = false;
  while (true) {
    int running = 0;
    curl_multi_perform(multi.get(), &running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi.get(), &queued)) {
      if (msg->msg == CURLMSG_DONE) {
        done = msg->data.result;
        finished = true;
      }
    }
    if (finished || running == 0) break;
    curl_waitfd extra{};
    extra.fd = wake_fd;
    extra.events = CURL_WAIT_POLLIN;
    curl_multi_poll(multi.get(), wake_fd >= 0 ? &extra : nullptr, wake_fd >= 0 ? 1 : 0,
                    static_cast<int>(std::max<std::int64_t>(1, tick.count())), nullptr);
    if (!poll()) break;
  }
  curl_multi_remove_handle(multi.get(), easy.get());
  if (finished && done != CURLE_OK) return TransportError(socket_, done, detail);
  long status = 0;
  curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &status);
  return status;
}

}  // namespace kbus::handlers::detail
