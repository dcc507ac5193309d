#pragma once
// What makes a struct a kbus message: a MessageTraits<T> specialisation with
//   static constexpr std::string_view kType  = "video.EncodeVideo";  // stable, never the C++ name
//   static constexpr kbus::MessageKind kKind = kbus::MessageKind::kCommand;
//   static constexpr std::string_view kTopic = "video.commands";     // default topic
// plus a codec: a field list (kFields) or Encode/Decode, as codec.hpp describes.
//
// Commands ask one handler to do something and go through Context::Send or a producer's Send;
// events say something happened, any number of groups may subscribe, and go through Publish.

#include <concepts>
#include <string_view>

#include "kbus/codec.hpp"

namespace kbus {

enum class MessageKind { kCommand, kEvent };
std::string_view ToString(MessageKind kind);  // "command" / "event", as in the kbus-kind header

template <class T>
concept Message = requires {
  { MessageTraits<T>::kType } -> std::convertible_to<std::string_view>;
  { MessageTraits<T>::kKind } -> std::convertible_to<MessageKind>;
  { MessageTraits<T>::kTopic } -> std::convertible_to<std::string_view>;
} && detail::JsonStruct<T>;

template <class T>
concept Command = Message<T> && MessageTraits<T>::kKind == MessageKind::kCommand;
template <class T>
concept Event = Message<T> && MessageTraits<T>::kKind == MessageKind::kEvent;

}  // namespace kbus
