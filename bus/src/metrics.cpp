#include "kbus/metrics.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>

#include "kbus/json.hpp"

namespace kbus::metrics {

namespace {

void AtomicAdd(std::atomic<double>& a, double d) noexcept {
  double old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, old + d, std::memory_order_relaxed)) {
  }
}

bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

void CheckName(const std::string& name, bool label) {
  bool ok = !name.empty() && (IsNameStart(name[0]) || (!label && name[0] == ':'));
  for (char c : name) ok = ok && (IsNameChar(c) || (!label && c == ':'));
  if (label && name.starts_with("__")) ok = false;
  if (label && name == "le") ok = false;  // histograms use it for their buckets
  if (!ok) {
    throw std::invalid_argument(std::string(label ? "label name" : "metric name") + " '" + name +
                                "' is not allowed by Prometheus");
  }
}

void AppendEscaped(std::string& out, std::string_view text, bool quote_too) {
  const std::string_view special = quote_too ? std::string_view("\\\n\"") : std::string_view("\\\n");
  // Runs without anything to escape (nearly always the whole text) go in one append.
  for (std::size_t at = 0;;) {
    const std::size_t next = text.find_first_of(special, at);
    out.append(text.substr(at, next == std::string_view::npos ? std::string_view::npos : next - at));
    if (next == std::string_view::npos) return;
    out += text[next] == '\n' ? "\\n" : text[next] == '"' ? "\\\"" : "\\\\";
    at = next + 1;
  }
}

void AppendNumber(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void AppendNumber(std::string& out, std::uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// {a="x",b="y"} plus an optional le="...", or nothing when there are no labels at all.
void AppendLabels(std::string& out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string_view le = {}) {
  if (names.empty() && le.empty()) return;
  out += '{';
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    out += names[i];
    out += "=\"";
    AppendEscaped(out, values[i], true);
    out += '"';
  }
  if (!le.empty()) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

void AppendSeries(std::string& out, const std::string& name, std::string_view suffix,
                  const std::vector<std::string>& labels, const std::vector<std::string>& values,
                  std::string_view le = {}) {
  out += name;
  out += suffix;
  AppendLabels(out, labels, values, le);
  out += ' ';
}

std::vector<double> Checked(std::vector<double> bounds) {
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      throw std::invalid_argument("histogram bounds must be finite and strictly increasing");
    }
  }
  return bounds;
}

template <class M>
std::unique_ptr<M> Make(const std::vector<double>& bounds) {
  if constexpr (std::is_same_v<M, Histogram>) {
    return std::make_unique<Histogram>(bounds);
  } else {
    return std::make_unique<M>();
  }
}

}  // namespace

void Gauge::Add(double d) noexcept { AtomicAdd(value_, d); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(Checked(std::move(bounds))),
      counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {}

void Histogram::Observe(double v) noexcept {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

std::vector<double> DurationBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
}

std::vector<double> LongDurationBuckets() {
  return {1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 10800};
}

template <class M>
Family<M>::Family(std::string name, std::string help, std::vector<std::string> labels, Kind kind,
                  std::vector<double> bounds)
    : name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)), kind_(kind),
      bounds_(std::move(bounds)) {
  if (labels_.empty()) Find({});  // a series without labels shows from the start, as 0
}

template <class M>
M& Family<M>::Find(std::vector<std::string> values) {
  if (values.size() != labels_.size()) {
    throw std::invalid_argument(name_ + ": " + std::to_string(labels_.size()) + " label values expected, got " +
                                std::to_string(values.size()));
  }
  for (auto& v : values) {
    if (!IsValidUtf8(v)) v = ToValidUtf8(v);
  }
  std::lock_guard lock(mu_);
  auto it = series_.find(values);
  if (it == series_.end()) it = series_.emplace(std::move(values), Make<M>(bounds_)).first;
  return *it->second;
}

template <class M>
M& Family<M>::With(std::initializer_list<std::string_view> values) {
  std::vector<std::string> v;
  v.reserve(values.size());
  for (auto s : values) v.emplace_back(s);
  return Find(std::move(v));
}

template <class M>
M& Family<M>::With(const std::vector<std::string>& values) {
  return Find(values);
}

template <class M>
void Family<M>::Remove(const std::vector<std::string>& values) {
  std::lock_guard lock(mu_);
  series_.erase(values);
}

template <class M>
void Family<M>::RemoveIf(const std::function<bool(const std::vector<std::string>&)>& drop) {
  std::lock_guard lock(mu_);
  std::erase_if(series_, [&](const auto& kv) { return drop(kv.first); });
}

template <class M>
void Family<M>::Render(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out += ' ';
  AppendEscaped(out, help_, false);
  out += "\n# TYPE ";
  out += name_;
  out += kind_ == Kind::kCounter ? " counter\n" : kind_ == Kind::kGauge ? " gauge\n" : " histogram\n";
  // The le label values, formatted once per scrape rather than once per series.
  std::vector<std::string> le;
  if constexpr (std::is_same_v<M, Histogram>) {
    le.resize(bounds_.size() + 1);
    for (std::size_t i = 0; i < bounds_.size(); ++i) AppendNumber(le[i], bounds_[i]);
    le.back() = "+Inf";
  }
  std::string labels;  // a histogram series' labels; one buffer for the whole family
  if constexpr (std::is_same_v<M, Histogram>) labels.reserve(256);
  std::lock_guard lock(mu_);
  for (const auto& [values, m] : series_) {
    if constexpr (std::is_same_v<M, Counter>) {
      AppendSeries(out, name_, {}, labels_, values);
      AppendNumber(out, m->value());
      out += '\n';
    } else if constexpr (std::is_same_v<M, Gauge>) {
      AppendSeries(out, name_, {}, labels_, values);
      AppendNumber(out, m->value());
      out += '\n';
    } else {
      // The series' labels, escaped once for its bucket, _sum and _count lines: {a="x",b="y"
      // without the closing brace, or empty.
      labels.clear();
      AppendLabels(labels, labels_, values);
      if (!labels.empty()) labels.pop_back();
      // Read the buckets first and derive the count from them, so that a scrape racing an
      // Observe never shows a +Inf bucket that disagrees with _count.
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        cumulative += m->bucket_count(i);
        out += name_;
        out += "_bucket";
        if (labels.empty()) {
          out += '{';
        } else {
          out += labels;
          out += ',';
        }
        out += "le=\"";
        out += le[i];
        out += "\"} ";
        AppendNumber(out, cumulative);
        out += '\n';
      }
      for (const std::string_view suffix : {"_sum", "_count"}) {
        out += name_;
        out += suffix;
        if (!labels.empty()) {
          out += labels;
          out += '}';
        }
        out += ' ';
        if (suffix == "_sum") {
          AppendNumber(out, m->sum());
        } else {
          AppendNumber(out, cumulative);
        }
        out += '\n';
      }
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

struct Registry::Entry {
  std::string name;
  std::vector<std::string> labels;
  Kind kind;
  std::vector<double> bounds;
  std::unique_ptr<Family<Counter>> counter;
  std::unique_ptr<Family<Gauge>> gauge;
  std::unique_ptr<Family<Histogram>> histogram;
};

Registry::Registry() = default;
Registry::~Registry() = default;

namespace {

// True when a histogram named `histogram` renders series named `name` (its _bucket, _sum and
// _count): a second family of that name would repeat them, and Prometheus refuses the scrape.
bool HistogramSeriesName(const std::string& histogram, const std::string& name) {
  if (!name.starts_with(histogram)) return false;
  const std::string_view suffix = std::string_view(name).substr(histogram.size());
  return suffix == "_bucket" || suffix == "_sum" || suffix == "_count";
}

}  // namespace

Registry::Entry& Registry::Add(std::string name, std::string help, std::vector<std::string> labels, Kind kind,
                               std::vector<double> bounds) {
  CheckName(name, false);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    CheckName(labels[i], true);
    for (std::size_t j = 0; j < i; ++j) {
      if (labels[j] == labels[i]) {
        throw std::invalid_argument("metric '" + name + "': label name '" + labels[i] + "' appears twice");
      }
    }
  }
  // Help text is shown as is: it must be UTF-8 like the rest of the exposition.
  if (!IsValidUtf8(help)) help = ToValidUtf8(help);
  std::lock_guard lock(mu_);
  for (auto& e : families_) {
    if (e->kind == Kind::kHistogram && HistogramSeriesName(e->name, name)) {
      throw std::invalid_argument("metric '" + name + "' clashes with the series of histogram '" + e->name + "'");
    }
    if (kind == Kind::kHistogram && HistogramSeriesName(name, e->name)) {
      throw std::invalid_argument("metric '" + e->name + "' clashes with the series of histogram '" + name + "'");
    }
    if (e->name != name) continue;
    if (e->kind != kind || e->labels != labels || e->bounds != bounds) {
      throw std::invalid_argument("metric '" + name + "' is already registered with another kind, labels or buckets");
    }
    return *e;
  }
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->labels = labels;
  e->kind = kind;
  e->bounds = bounds;
  switch (kind) {
    case Kind::kCounter:
      e->counter.reset(new Family<Counter>(std::move(name), std::move(help), std::move(labels), kind, {}));
      break;
    case Kind::kGauge:
      e->gauge.reset(new Family<Gauge>(std::move(name), std::move(help), std::move(labels), kind, {}));
      break;
    case Kind::kHistogram:
      e->histogram.reset(new Family<Histogram>(std::move(name), std::move(help), std::move(labels), kind,
                                               Checked(std::move(bounds))));
      break;
  }
  families_.push_back(std::move(e));
  return *families_.back();
}

Family<Counter>& Registry::AddCounter(std::string name, std::string help, std::vector<std::string> labels) {
  return *Add(std::move(name), std::move(help), std::move(labels), Kind::kCounter, {}).counter;
}

Family<Gauge>& Registry::AddGauge(std::string name, std::string help, std::vector<std::string> labels) {
  return *Add(std::move(name), std::move(help), std::move(labels), Kind::kGauge, {}).gauge;
}

Family<Histogram>& Registry::AddHistogram(std::string name, std::string help, std::vector<std::string> labels,
                                          std::vector<double> bounds) {
  return *Add(std::move(name), std::move(help), std::move(labels), Kind::kHistogram, std::move(bounds)).histogram;
}

CollectorHandle Registry::OnCollect(std::function<void()> collect) {
  std::lock_guard lock(collect_mu_);
  const std::uint64_t id = next_collector_++;
  collectors_.emplace(id, std::move(collect));
  return CollectorHandle(this, id);
}

void Registry::RemoveCollector(std::uint64_t id) noexcept {
  std::lock_guard lock(collect_mu_);
  collectors_.erase(id);
}

void Registry::RenderTo(std::string& out) const {
  {
    // Held through the calls, so a component that unregisters waits for its collector to end.
    std::lock_guard lock(collect_mu_);
    for (const auto& [id, collect] : collectors_) collect();
  }
  std::vector<const Entry*> entries;
  {
    std::lock_guard lock(mu_);
    entries.reserve(families_.size());
    for (const auto& e : families_) entries.push_back(e.get());
  }
  for (const Entry* e : entries) {
    if (e->counter) e->counter->Render(out);
    if (e->gauge) e->gauge->Render(out);
    if (e->histogram) e->histogram->Render(out);
  }
}

std::string Registry::Render() const {
  std::string out;
  RenderTo(out);
  return out;
}

CollectorHandle::CollectorHandle(CollectorHandle&& other) noexcept
    : registry_(std::exchange(other.registry_, nullptr)), id_(other.id_) {}

CollectorHandle& CollectorHandle::operator=(CollectorHandle&& other) noexcept {
  if (this != &other) {
    Reset();
    registry_ = std::exchange(other.registry_, nullptr);
    id_ = other.id_;
  }
  return *this;
}

CollectorHandle::~CollectorHandle() { Reset(); }

void CollectorHandle::Reset() noexcept {
  if (registry_) registry_->RemoveCollector(id_);
  registry_ = nullptr;
}

}  // namespace kbus::metrics
