#pragma once
// JSON codecs for message and state structs.
//
// A struct becomes JSON-capable by specialising kbus::JsonTraits<T> (plain structs, e.g. nested
// ones or workflow state) or kbus::MessageTraits<T> (messages, see message.hpp) with either
//   - a field list:  static constexpr auto kFields = kbus::Fields(kbus::Field("id", &T::id), ...);
//   - or a hand-written pair:  static void Encode(const T&, kbus::JsonWriter&);
//                              static kbus::Result<T> Decode(const kbus::JsonValue&);
// Field types: std::string, bool, integers, floating point, std::chrono durations (integer
// milliseconds on the wire), std::vector, std::deque, std::map<std::string, X>, std::optional,
// kbus::Header (a [name, value] pair of strings), and structs that are themselves JSON-capable.
// Unknown members are ignored, so producers may add fields.
// A std::string member that holds JSON text is listed as kbus::RawJsonField("state", &T::state):
// written verbatim as the member's value (not as a string; hold compact text, whitespace is
// kept), read back as the value's compact text. Encoding refuses text that is not exactly one
// JSON value within the rules below, the levels around it counting towards kMaxJsonDepth, and
// names the field ("field 'state' is not valid JSON (at byte 3): ...").
// Presence (the third argument of Field and RawJsonField): kRequired, the default, is always
// written and must be there; kOptional is always written and may be missing or null (the member
// keeps its default); kOmitDefault is left out while the member equals its default (that of a
// value-initialised T, so in-class initialisers count) and read like kOptional: for members
// added later, so records without them stay as they were. An empty std::optional is left out
// whatever its presence.
// Decoding never throws: a missing or mistyped field is an Error naming the field's path.
// Strings must be valid UTF-8 and nesting stays within kMaxJsonDepth (json.hpp), both ways:
// decoding refuses other input as a decode error naming the field, and encoding refuses such a
// value (EncodeJson's error, ToJson's EncodeError) instead of writing JSON no client can read.

#include <chrono>
#include <concepts>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include <deque>

#include "kbus/json.hpp"
#include "kbus/record.hpp"
#include "kbus/result.hpp"

namespace kbus {

template <class T>
struct JsonTraits {};  // specialise for plain structs

template <class T>
struct MessageTraits {};  // specialise for messages (message.hpp explains the members)

// A record header as a [name, value] pair of strings (Kafka allows repeated names, so headers
// are a list of pairs rather than an object).
template <>
struct JsonTraits<Header> {
  static void Encode(const Header& h, JsonWriter& w) {
    w.StartArray();
    w.String(h.name);
    w.String(h.value);
    w.EndArray();
  }
  static Result<Header> Decode(const JsonValue& v) {
    if (v.IsArray() && v.Size() == 2) {
      const auto name = v.At(0).AsString();
      const auto value = v.At(1).AsString();
      if (name && value) return Header{std::string(*name), std::string(*value)};
    }
    return Error(ErrorCode::kDecode, "expected a [name, value] pair of strings");
  }
};

enum class Presence { kRequired, kOptional };
inline constexpr Presence kRequired = Presence::kRequired;
inline constexpr Presence kOptional = Presence::kOptional;  // missing: the member keeps its default
// Written only when it differs from its default; read like kOptional. A type of its own, so
// that only these members' types need an operator==.
struct OmitDefault {};
inline constexpr OmitDefault kOmitDefault{};

template <class S, class M, bool OmitsDefault = false>
struct FieldDef {
  std::string_view name;
  M S::*member;
  Presence presence;
  static constexpr bool kOmitsDefault = OmitsDefault;
};

template <class S, class M>
constexpr FieldDef<S, M> Field(std::string_view name, M S::*member,
                               Presence presence = kRequired) {
  return {name, member, presence};
}
template <class S, class M>
constexpr FieldDef<S, M, true> Field(std::string_view name, M S::*member, OmitDefault) {
  return {name, member, kOptional};
}

// A std::string member holding one JSON value, written as that value (see above).
template <class S, bool OmitsDefault = false>
struct RawJsonFieldDef {
  std::string_view name;
  std::string S::*member;
  Presence presence;
  static constexpr bool kOmitsDefault = OmitsDefault;
};

template <class S>
constexpr RawJsonFieldDef<S> RawJsonField(std::string_view name, std::string S::*member,
                                          Presence presence = kRequired) {
  return {name, member, presence};
}
template <class S>
constexpr RawJsonFieldDef<S, true> RawJsonField(std::string_view name, std::string S::*member,
                                                OmitDefault) {
  return {name, member, kOptional};
}

template <class... F>
constexpr auto Fields(F... fields) {
  return std::make_tuple(fields...);
}

namespace detail {

template <class Traits>
concept HasFieldList = requires { Traits::kFields; };
template <class Traits, class T>
concept HasCustomCodec = requires(const T& v, JsonWriter& w, const JsonValue& j) {
  Traits::Encode(v, w);
  { Traits::Decode(j) } -> std::same_as<Result<T>>;
};
template <class Traits, class T>
concept IsCodecTraits = HasFieldList<Traits> || HasCustomCodec<Traits, T>;

template <class T>
struct CodecTraitsOf {
  using type = std::conditional_t<IsCodecTraits<JsonTraits<T>, T>, JsonTraits<T>, MessageTraits<T>>;
};
template <class T>
using CodecTraits = typename CodecTraitsOf<T>::type;

template <class T>
concept JsonStruct = IsCodecTraits<JsonTraits<T>, T> || IsCodecTraits<MessageTraits<T>, T>;

template <class T>
struct IsSequence : std::false_type {};
template <class T, class A>
struct IsSequence<std::vector<T, A>> : std::true_type {};
template <class T, class A>
struct IsSequence<std::deque<T, A>> : std::true_type {};
template <class F>
struct IsRawJsonField : std::false_type {};
template <class S, bool OmitsDefault>
struct IsRawJsonField<RawJsonFieldDef<S, OmitsDefault>> : std::true_type {};

// The value kOmitDefault compares with: one default-constructed T per type, made on first use.
template <class T>
const T& DefaultOf() {
  static const T value{};
  return value;
}
template <class T>
struct IsStringMap : std::false_type {};
template <class V, class C, class A>
struct IsStringMap<std::map<std::string, V, C, A>> : std::true_type {};
template <class T>
struct IsOptional : std::false_type {};
template <class T>
struct IsOptional<std::optional<T>> : std::true_type {};
template <class T>
struct IsDuration : std::false_type {};
template <class R, class P>
struct IsDuration<std::chrono::duration<R, P>> : std::true_type {};

// Where decoding failed: a path such as "params.codec" or "args[2]" and what was wrong.
struct DecodeFailure {
  std::string path;
  std::string what;
  void Prefix(std::string_view segment);  // segment is "name" or "[i]"
};

std::string MistypeMessage(std::string_view expected, const JsonValue& got);
std::string OutOfRangeMessage(const JsonValue& got, std::string_view type_name);
Error ToError(const DecodeFailure& failure);

template <class M>
void EncodeValue(const M& value, JsonWriter& w);
template <class M>
bool DecodeValue(const JsonValue& v, M& out, DecodeFailure& f);

template <class T>
void EncodeStruct(const T& value, JsonWriter& w) {
  using Traits = CodecTraits<T>;
  if constexpr (HasFieldList<Traits>) {
    w.StartObject();
    std::apply(
        [&](const auto&... field) {
          auto one = [&](const auto& fd) {
            if (!w.ok()) return;  // a refused value: the text is dropped, its path is named
            const auto& member = value.*(fd.member);
            using M = std::remove_cvref_t<decltype(member)>;
            if constexpr (IsOptional<M>::value) {
              if (!member) return;  // absent optionals are left out, not written as null
            }
            if constexpr (std::remove_cvref_t<decltype(fd)>::kOmitsDefault) {
              static_assert(std::equality_comparable<M>, "kOmitDefault needs a member type with ==");
              if (member == DefaultOf<T>().*(fd.member)) return;
            }
            w.Key(fd.name);
            if constexpr (IsRawJsonField<std::remove_cvref_t<decltype(fd)>>::value) {
              w.CheckedRawValue(member);
            } else {
              EncodeValue(member, w);
            }
            if (!w.ok()) [[unlikely]] w.PrefixErrorPath(fd.name);
          };
          (one(field), ...);
        },
        Traits::kFields);
    w.EndObject();
  } else {
    Traits::Encode(value, w);
  }
}

template <class T>
bool DecodeStruct(const JsonValue& v, T& out, DecodeFailure& f) {
  using Traits = CodecTraits<T>;
  if constexpr (HasFieldList<Traits>) {
    if (!v.IsObject()) {
      f.what = MistypeMessage("an object", v);
      return false;
    }
    bool ok = true;
    std::size_t cursor = 0;  // where the next field most likely is: writers keep field order
    std::apply(
        [&](const auto&... field) {
          auto one = [&](const auto& fd) {
            if (!ok) return;
            auto member = v.Find(fd.name, &cursor);
            if (!member || (fd.presence != kRequired && member->IsNull())) {
              if (fd.presence == kRequired) {
                f.path = std::string(fd.name);
                f.what = "is missing";
                ok = false;
              }
              return;
            }
            if constexpr (IsRawJsonField<std::remove_cvref_t<decltype(fd)>>::value) {
              // Parsed within kbus's rules, so its compact text is too.
              out.*(fd.member) = member->ToJson();
            } else if (!DecodeValue(*member, out.*(fd.member), f)) {
              f.Prefix(fd.name);
              ok = false;
            }
          };
          (one(field), ...);
        },
        Traits::kFields);
    return ok;
  } else {
    Result<T> r = Traits::Decode(v);
    if (!r.ok()) {
      f.what = r.error().message();
      return false;
    }
    out = std::move(r).value();
    return true;
  }
}

template <class M>
void EncodeValue(const M& value, JsonWriter& w) {
  if constexpr (std::is_same_v<M, std::string>) {
    w.String(value);
  } else if constexpr (std::is_same_v<M, bool>) {
    w.Bool(value);
  } else if constexpr (std::is_integral_v<M> && std::is_signed_v<M>) {
    w.Int64(static_cast<std::int64_t>(value));
  } else if constexpr (std::is_integral_v<M>) {
    w.Uint64(static_cast<std::uint64_t>(value));
  } else if constexpr (std::is_floating_point_v<M>) {
    w.Double(static_cast<double>(value));
  } else if constexpr (IsDuration<M>::value) {
    w.Int64(std::chrono::duration_cast<std::chrono::milliseconds>(value).count());
  } else if constexpr (IsOptional<M>::value) {
    if (value) {
      EncodeValue(*value, w);
    } else {
      w.Null();
    }
  } else if constexpr (IsSequence<M>::value) {
    w.StartArray();
    std::size_t i = 0;
    for (const auto& item : value) {
      EncodeValue(item, w);
      if (!w.ok()) [[unlikely]] {
        w.PrefixErrorPath("[" + std::to_string(i) + "]");
        break;
      }
      ++i;
    }
    w.EndArray();
  } else if constexpr (IsStringMap<M>::value) {
    w.StartObject();
    for (const auto& [k, item] : value) {
      w.Key(k);
      EncodeValue(item, w);
      if (!w.ok()) [[unlikely]] {
        w.PrefixErrorPath(k);
        break;
      }
    }
    w.EndObject();
  } else {
    static_assert(JsonStruct<M>, "no JSON codec for this type: specialise kbus::JsonTraits<T>");
    EncodeStruct(value, w);
  }
}

template <class M>
bool DecodeValue(const JsonValue& v, M& out, DecodeFailure& f) {
  if constexpr (std::is_same_v<M, std::string>) {
    const auto s = v.AsString();
    if (!s) return f.what = MistypeMessage("a string", v), false;
    out.assign(*s);
  } else if constexpr (std::is_same_v<M, bool>) {
    const auto b = v.AsBool();
    if (!b) return f.what = MistypeMessage("a boolean", v), false;
    out = *b;
  } else if constexpr (std::is_integral_v<M> && std::is_signed_v<M>) {
    const auto i = v.AsInt64();
    if (!i) return f.what = MistypeMessage("an integer", v), false;
    const std::int64_t n = *i;
    if (n < std::numeric_limits<M>::min() || n > std::numeric_limits<M>::max()) {
      return f.what = OutOfRangeMessage(v, sizeof(M) == 4 ? "a 32-bit integer" : "this integer"),
             false;
    }
    out = static_cast<M>(n);
  } else if constexpr (std::is_integral_v<M>) {
    const auto u = v.AsUint64();
    if (!u) return f.what = MistypeMessage("a non-negative integer", v), false;
    const std::uint64_t n = *u;
    if (n > std::numeric_limits<M>::max()) {
      return f.what = OutOfRangeMessage(v, "this unsigned integer"), false;
    }
    out = static_cast<M>(n);
  } else if constexpr (std::is_floating_point_v<M>) {
    const auto d = v.AsDouble();
    if (!d) return f.what = MistypeMessage("a number", v), false;
    out = static_cast<M>(*d);
  } else if constexpr (IsDuration<M>::value) {
    if (!v.IsInt64() || v.GetInt64() < 0) {
      return f.what = MistypeMessage("a non-negative integer of milliseconds", v), false;
    }
    out = std::chrono::duration_cast<M>(std::chrono::milliseconds(v.GetInt64()));
  } else if constexpr (IsOptional<M>::value) {
    if (v.IsNull()) {
      out.reset();
      return true;
    }
    typename M::value_type inner{};
    if (!DecodeValue(v, inner, f)) return false;
    out = std::move(inner);
  } else if constexpr (IsSequence<M>::value) {
    if (!v.IsArray()) return f.what = MistypeMessage("an array", v), false;
    out.clear();
    if constexpr (requires { out.reserve(std::size_t{}); }) out.reserve(v.Size());
    for (std::size_t i = 0; i < v.Size(); ++i) {
      typename M::value_type item{};
      if (!DecodeValue(v.At(i), item, f)) {
        f.Prefix("[" + std::to_string(i) + "]");
        return false;
      }
      out.push_back(std::move(item));
    }
  } else if constexpr (IsStringMap<M>::value) {
    if (!v.IsObject()) return f.what = MistypeMessage("an object", v), false;
    out.clear();
    for (std::size_t i = 0; i < v.Size(); ++i) {
      typename M::mapped_type item{};
      if (!DecodeValue(v.MemberValue(i), item, f)) {
        f.Prefix(v.MemberName(i));
        return false;
      }
      out.emplace(std::string(v.MemberName(i)), std::move(item));
    }
  } else {
    static_assert(JsonStruct<M>, "no JSON codec for this type: specialise kbus::JsonTraits<T>");
    return DecodeStruct(v, out, f);
  }
  return true;
}

}  // namespace detail

// Thrown by ToJson, and so by Context::Send and Publish, for a value kbus does not put on the
// wire: a string that is not valid UTF-8, or nesting past kMaxJsonDepth. Inside a handler it
// fails the attempt like any exception, and nothing is sent. The error (kInvalidArgument) names
// the field.
class EncodeError : public std::runtime_error {
 public:
  explicit EncodeError(Error error)
      : std::runtime_error(error.message()), error_(std::move(error)) {}
  const Error& error() const { return error_; }

 private:
  Error error_;
};

// Writes `value` as JSON into `w`; a refused value leaves `w` not ok() (json.hpp).
template <class T>
void WriteJson(const T& value, JsonWriter& w) {
  detail::EncodeValue(value, w);
}

// Serialises `value` to compact JSON text, or says which field kbus refuses to write:
// "cannot encode as JSON: field 'args[2]' is not valid UTF-8".
template <class T>
Result<std::string> EncodeJson(const T& value) {
  JsonWriter w;
  detail::EncodeValue(value, w);
  if (Status s = w.status(); !s.ok()) {
    return Error(s.error().code(), "cannot encode as JSON: " + s.error().message());
  }
  return w.Take();
}

// Serialises `value` to compact JSON text. Throws EncodeError where EncodeJson returns an error.
template <class T>
std::string ToJson(const T& value) {
  Result<std::string> json = EncodeJson(value);
  if (!json.ok()) throw EncodeError(json.error());
  return std::move(json).value();
}

// Decodes a parsed JSON value. Errors have code kDecode and name the failing field.
template <class T>
Result<T> FromJsonValue(const JsonValue& v) {
  T out{};
  detail::DecodeFailure failure;
  if (!detail::DecodeValue(v, out, failure)) return detail::ToError(failure);
  return out;
}

// Parses and decodes JSON text.
template <class T>
Result<T> FromJson(std::string_view text) {
  JsonDocument doc;
  if (Status s = doc.Parse(text); !s.ok()) return s.error();
  return FromJsonValue<T>(doc.Root());
}

}  // namespace kbus
