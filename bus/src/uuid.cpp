#include "kbus/uuid.hpp"

#include <array>
#include <cstdint>
#include <cstring>
#include <random>

namespace kbus {
namespace {

using Bytes16 = std::array<std::uint8_t, 16>;

std::string Format(const Bytes16& b) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0xf]);
  }
  return out;
}

// SHA-1 (FIPS 180-4), only for name-based UUIDs: not used for anything security-related.
class Sha1 {
 public:
  void Update(const std::uint8_t* data, std::size_t len) {
    for (std::size_t i = 0; i < len; ++i) {
      block_[block_len_++] = data[i];
      if (block_len_ == 64) Compress();
    }
    total_bits_ += static_cast<std::uint64_t>(len) * 8;
  }
  std::array<std::uint8_t, 20> Final() {
    const std::uint64_t bits = total_bits_;
    const std::uint8_t one = 0x80;
    Update(&one, 1);
    const std::uint8_t zero = 0;
    while (block_len_ != 56) Update(&zero, 1);
    std::uint8_t len_be[8];
    for (int i = 0; i < 8; ++i) len_be[i] = static_cast<std::uint8_t>(bits >> (56 - 8 * i));
    Update(len_be, 8);
    std::array<std::uint8_t, 20> out{};
    for (int i = 0; i < 5; ++i) {
      for (int j = 0; j < 4; ++j) out[4 * i + j] = static_cast<std::uint8_t>(h_[i] >> (24 - 8 * j));
    }
    return out;
  }

 private:
  static std::uint32_t Rotl(std::uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }
  void Compress() {
    std::uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      w[i] = (std::uint32_t{block_[4 * i]} << 24) | (std::uint32_t{block_[4 * i + 1]} << 16) |
             (std::uint32_t{block_[4 * i + 2]} << 8) | std::uint32_t{block_[4 * i + 3]};
    }
    for (int i = 16; i < 80; ++i) w[i] = Rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    std::uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4];
    for (int i = 0; i < 80; ++i) {
      std::uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6;
      }
      const std::uint32_t t = Rotl(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = Rotl(b, 30);
      b = a;
      a = t;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    block_len_ = 0;
  }

  std::uint32_t h_[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::uint8_t block_[64] = {};
  std::size_t block_len_ = 0;
  std::uint64_t total_bits_ = 0;
};

// kbus's namespace for version 5 ids (a fixed random value; changing it changes every derived id).
constexpr Bytes16 kNamespace = {0x3d, 0x1c, 0x8e, 0x52, 0x7a, 0x41, 0x4b, 0x0f,
                                0x9e, 0x63, 0x25, 0xd8, 0x0b, 0x6a, 0x11, 0xc7};

}  // namespace

std::string NewUuid() {
  thread_local std::mt19937_64 rng{[] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }()};
  Bytes16 b;
  const std::uint64_t hi = rng();
  const std::uint64_t lo = rng();
  std::memcpy(b.data(), &hi, 8);
  std::memcpy(b.data() + 8, &lo, 8);
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80);
  return Format(b);
}

std::string NameUuid(std::string_view name) {
  Sha1 sha;
  sha.Update(kNamespace.data(), kNamespace.size());
  sha.Update(reinterpret_cast<const std::uint8_t*>(name.data()), name.size());
  const auto digest = sha.Final();
  Bytes16 b;
  std::memcpy(b.data(), digest.data(), 16);
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x50);
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80);
  return Format(b);
}

}  // namespace kbus
