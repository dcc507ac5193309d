#include "record.hpp"

#include <algorithm>

#include "kbus/json.hpp"

namespace kbus::workflows::detail {

bool Instance::Processed(std::string_view message_id) const {
  return std::find(processed.begin(), processed.end(), message_id) != processed.end();
}

void Instance::Remember(std::string message_id, std::size_t bound) {
  processed.push_back(std::move(message_id));
  while (processed.size() > std::max<std::size_t>(bound, 1)) processed.pop_front();
}

namespace {

void WriteHeaders(const std::vector<Header>& headers, JsonWriter& w) {
  w.StartArray();
  for (const Header& h : headers) {
    w.StartArray();
    w.String(h.name);
    w.String(h.value);
    w.EndArray();
  }
  w.EndArray();
}

// Decoding helpers: each returns false and sets `why` on a missing or mistyped member.
struct Reader {
  std::string why;

  bool Str(const JsonValue& o, std::string_view name, std::string& out) {
    auto v = o.Find(name);
    auto s = v ? v->AsString() : std::nullopt;
    if (!s) return Fail(name, "a string");
    out.assign(*s);
    return true;
  }
  bool I64(const JsonValue& o, std::string_view name, std::int64_t& out) {
    auto v = o.Find(name);
    auto i = v ? v->AsInt64() : std::nullopt;
    if (!i) return Fail(name, "an integer");
    out = *i;
    return true;
  }
  template <class N>
  bool Int(const JsonValue& o, std::string_view name, N& out) {
    std::int64_t i = 0;
    if (!I64(o, name, i)) return false;
    out = static_cast<N>(i);
    return true;
  }
  bool Headers(const JsonValue& o, std::string_view name, std::vector<Header>& out) {
    auto v = o.Find(name);
    if (!v || !v->IsArray()) return Fail(name, "an array");
    for (std::size_t i = 0; i < v->Size(); ++i) {
      JsonValue pair = v->At(i);
      if (!pair.IsArray() || pair.Size() != 2 || !pair.At(0).IsString() || !pair.At(1).IsString()) {
        return Fail(name, "[name, value] pairs");
      }
      out.push_back({std::string(pair.At(0).GetString()), std::string(pair.At(1).GetString())});
    }
    return true;
  }
  bool Fail(std::string_view name, std::string_view expected) {
    why = "member '" + std::string(name) + "' must be " + std::string(expected);
    return false;
  }
};

}  // namespace

std::string Encode(const Instance& in) {
  JsonWriter w;
  w.StartObject();
  w.Key("workflow");
  w.String(in.workflow);
  w.Key("id");
  w.String(in.id);
  w.Key("schema");
  w.Int64(in.schema);
  w.Key("version");
  w.Uint64(in.version);
  w.Key("run");
  w.Int64(in.run);
  w.Key("status");
  w.String(in.status);
  w.Key("created_ms");
  w.Int64(in.created_ms);
  w.Key("updated_ms");
  w.Int64(in.updated_ms);
  w.Key("finished_ms");
  w.Int64(in.finished_ms);
  w.Key("correlation_id");
  w.String(in.correlation_id);
  w.Key("processed");
  w.StartArray();
  for (const std::string& id : in.processed) w.String(id);
  w.EndArray();
  w.Key("last_message");
  w.String(in.last_message);
  w.Key("outbox");
  w.StartArray();
  for (const OutgoingRecord& r : in.outbox) {
    w.StartObject();
    w.Key("topic");
    w.String(r.topic);
    w.Key("key");
    w.String(r.key);
    w.Key("payload");
    w.String(r.payload);
    w.Key("headers");
    WriteHeaders(r.headers, w);
    w.EndObject();
  }
  w.EndArray();
  w.Key("timeouts");
  w.StartArray();
  for (const Timeout& t : in.timeouts) {
    w.StartObject();
    w.Key("id");
    w.String(t.id);
    w.Key("name");
    w.String(t.name);
    w.Key("due_ms");
    w.Int64(t.due_ms);
    w.Key("payload");
    w.String(t.payload);
    w.EndObject();
  }
  w.EndArray();
  if (in.origin) {
    const Origin& o = *in.origin;
    w.Key("origin");
    w.StartObject();
    w.Key("topic");
    w.String(o.topic);
    w.Key("partition");
    w.Int64(o.partition);
    w.Key("offset");
    w.Int64(o.offset);
    w.Key("timestamp_ms");
    w.Int64(o.timestamp_ms);
    w.Key("key");
    w.String(o.key);
    w.Key("payload");
    w.String(o.payload);
    w.Key("headers");
    WriteHeaders(o.headers, w);
    w.EndObject();
  }
  w.Key("state");
  w.RawValue(in.state_json);
  // Omitted without a result, so records of runs without one (and of older kbus) stay as they
  // were; the console reads both names.
  if (!in.result_json.empty()) {
    w.Key("result");
    w.RawValue(in.result_json);
    w.Key("result_expires_ms");
    w.Int64(in.result_expires_ms);
  }
  w.EndObject();
  return w.Take();
}

Result<Instance> Decode(std::string_view text) {
  JsonDocument doc;
  if (Status s = doc.Parse(text); !s.ok()) return s.error();
  const JsonValue root = doc.Root();
  if (!root.IsObject()) return Error(ErrorCode::kDecode, "a workflow state record must be a JSON object");
  Instance in;
  in.status.clear();
  Reader r;
  bool ok = r.Str(root, "workflow", in.workflow) && r.Str(root, "id", in.id) && r.Int(root, "schema", in.schema) &&
            r.Int(root, "version", in.version) && r.Int(root, "run", in.run) && r.Str(root, "status", in.status) &&
            r.I64(root, "created_ms", in.created_ms) && r.I64(root, "updated_ms", in.updated_ms) &&
            r.I64(root, "finished_ms", in.finished_ms) && r.Str(root, "correlation_id", in.correlation_id) &&
            r.Str(root, "last_message", in.last_message);
  if (ok && in.status != kRunning && in.status != kCompleted && in.status != kFailed) {
    ok = r.Fail("status", "running, completed or failed");
  }
  if (ok) {
    auto processed = root.Find("processed");
    if (!processed || !processed->IsArray()) {
      ok = r.Fail("processed", "an array of strings");
    } else {
      for (std::size_t i = 0; ok && i < processed->Size(); ++i) {
        auto id = processed->At(i).AsString();
        if (!id) ok = r.Fail("processed", "an array of strings");
        else in.processed.emplace_back(*id);
      }
    }
  }
  if (ok) {
    auto outbox = root.Find("outbox");
    if (!outbox || !outbox->IsArray()) {
      ok = r.Fail("outbox", "an array");
    } else {
      for (std::size_t i = 0; ok && i < outbox->Size(); ++i) {
        OutgoingRecord rec;
        const JsonValue o = outbox->At(i);
        ok = r.Str(o, "topic", rec.topic) && r.Str(o, "key", rec.key) && r.Str(o, "payload", rec.payload) &&
             r.Headers(o, "headers", rec.headers);
        if (ok) in.outbox.push_back(std::move(rec));
      }
    }
  }
  if (ok) {
    auto timeouts = root.Find("timeouts");
    if (!timeouts || !timeouts->IsArray()) {
      ok = r.Fail("timeouts", "an array");
    } else {
      for (std::size_t i = 0; ok && i < timeouts->Size(); ++i) {
        Timeout t;
        const JsonValue o = timeouts->At(i);
        ok = r.Str(o, "id", t.id) && r.Str(o, "name", t.name) && r.I64(o, "due_ms", t.due_ms) &&
             r.Str(o, "payload", t.payload);
        if (ok) in.timeouts.push_back(std::move(t));
      }
    }
  }
  if (ok) {
    if (auto origin = root.Find("origin")) {
      Origin o;
      ok = r.Str(*origin, "topic", o.topic) && r.Int(*origin, "partition", o.partition) &&
           r.I64(*origin, "offset", o.offset) && r.I64(*origin, "timestamp_ms", o.timestamp_ms) &&
           r.Str(*origin, "key", o.key) && r.Str(*origin, "payload", o.payload) &&
           r.Headers(*origin, "headers", o.headers);
      if (ok) in.origin = std::move(o);
    }
  }
  if (ok) {
    auto state = root.Find("state");
    if (!state) ok = r.Fail("state", "present");
    else in.state_json = state->ToJson();
  }
  if (ok) {
    // Both optional: a record without them (none recorded, or written before results existed)
    // has no result. A null result is no result either.
    if (auto result = root.Find("result"); result && !result->IsNull()) in.result_json = result->ToJson();
    if (root.Find("result_expires_ms")) ok = r.I64(root, "result_expires_ms", in.result_expires_ms);
    if (in.result_json.empty()) in.result_expires_ms = 0;
  }
  if (!ok) return Error(ErrorCode::kDecode, "workflow state record: " + r.why);
  return in;
}

}  // namespace kbus::workflows::detail
