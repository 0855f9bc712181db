#include "engine/net/proxy_header.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace postern::engine {
namespace {

using Status = ProxyParseResult::Status;

constexpr std::string_view kV1Prefix = "PROXY ";
// \r\n\r\n\0\r\nQUIT\n: chosen by the spec so it cannot begin any text protocol.
constexpr std::string_view kV2Signature("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);
constexpr size_t kV2FixedSize = 16;  // signature, ver/cmd, fam, 2-byte length

// v2 command (low nibble of byte 12) and family/protocol (byte 13).
constexpr uint8_t kV2Local = 0x0;
constexpr uint8_t kV2Proxy = 0x1;
constexpr uint8_t kV2Unspec = 0x00;
constexpr uint8_t kV2Tcp4 = 0x11;
constexpr uint8_t kV2Tcp6 = 0x21;
constexpr size_t kV2Tcp4AddressSize = 4 + 4 + 2 + 2;
constexpr size_t kV2Tcp6AddressSize = 16 + 16 + 2 + 2;
constexpr size_t kTlvHeaderSize = 3;  // type, 2-byte length

// Longest textual forms inet_pton accepts: "255.255.255.255" and
// "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".
constexpr size_t kMaxV4Text = 15;
constexpr size_t kMaxV6Text = 45;

ProxyParseResult NeedMore() { return ProxyParseResult{}; }

ProxyParseResult Invalid(const char* why) {
  ProxyParseResult result;
  result.status = Status::kInvalid;
  result.error = why;
  return result;
}

ProxyParseResult DoneLocal(size_t consumed) {
  ProxyParseResult result;
  result.status = Status::kDone;
  result.consumed = consumed;
  result.local = true;
  return result;
}

uint8_t Byte(std::string_view in, size_t i) { return static_cast<uint8_t>(in[i]); }

uint16_t BigEndian16(std::string_view in, size_t i) {
  return static_cast<uint16_t>(Byte(in, i) << 8 | Byte(in, i + 1));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// The caller's view of an address: IPv4-mapped IPv6 reads as plain IPv4, so a
// proxied client and a direct one produce the same text for the same host.
std::string FormatV4(const uint8_t* bytes) {
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, bytes, text, sizeof(text));
  return text;
}

std::string FormatV6(const uint8_t* bytes) {
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(bytes, kMappedPrefix, sizeof(kMappedPrefix)) == 0) {
    return FormatV4(bytes + sizeof(kMappedPrefix));
  }
  char text[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, bytes, text, sizeof(text));
  return text;
}

// --- version 1 ---

// A v1 field, checked whole when `complete` (its ending space or CR has
// arrived) and otherwise only for characters and length, which is all a
// prefix can be judged by.
bool CheckV1Address(std::string_view field, bool v6, bool complete, std::string* out) {
  const size_t max_size = v6 ? kMaxV6Text : kMaxV4Text;
  if (field.size() > max_size) return false;
  for (char c : field) {
    const bool ok = v6 ? (IsHexDigit(c) || c == ':' || c == '.') : (IsDigit(c) || c == '.');
    if (!ok) return false;
  }
  if (!complete) return true;
  char text[kMaxV6Text + 1];
  std::memcpy(text, field.data(), field.size());
  text[field.size()] = '\0';
  uint8_t bytes[16];
  if (inet_pton(v6 ? AF_INET6 : AF_INET, text, bytes) != 1) return false;
  *out = v6 ? FormatV6(bytes) : FormatV4(bytes);
  return true;
}

bool CheckV1Port(std::string_view field, bool complete, uint16_t* out) {
  if (field.size() > 5) return false;
  if (field.size() > 1 && field[0] == '0') return false;
  uint32_t value = 0;
  for (char c : field) {
    if (!IsDigit(c)) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  // A prefix's value only grows, so an oversized prefix is already fatal.
  if (value > 65535) return false;
  if (complete && field.empty()) return false;
  *out = static_cast<uint16_t>(value);
  return true;
}

bool IsPrefixOf(std::string_view prefix, std::string_view word) {
  return word.substr(0, prefix.size()) == prefix;
}

ProxyParseResult ParseV1(std::string_view in) {
  const std::string_view window = in.substr(0, kMaxProxyV1HeaderSize);
  const size_t eol = window.find_first_of("\r\n");
  // The line is complete once its CR has arrived; the LF may still be on the way.
  const bool complete = eol != std::string_view::npos;
  if (complete) {
    if (window[eol] == '\n') return Invalid("PROXY v1 header has a bare LF");
    if (eol + 2 > kMaxProxyV1HeaderSize) return Invalid("PROXY v1 header longer than 107 bytes");
    if (eol + 1 < in.size() && in[eol + 1] != '\n') {
      return Invalid("PROXY v1 header has a CR without LF");
    }
  } else if (window.size() == kMaxProxyV1HeaderSize) {
    return Invalid("PROXY v1 header has no CRLF within 107 bytes");
  }
  const std::string_view line = complete ? window.substr(0, eol) : window;

  enum class Protocol { kNotYet, kTcp4, kTcp6, kUnknown };
  Protocol protocol = Protocol::kNotYet;
  ProxyParseResult result;
  int index = 0;  // field number: PROXY, protocol, src, dst, sport, dport
  size_t start = 0;
  for (;; ++index) {
    const size_t space = line.find(' ', start);
    const bool last = space == std::string_view::npos;
    const std::string_view field =
        line.substr(start, last ? std::string_view::npos : space - start);
    const bool field_complete = !last || complete;
    switch (index) {
      case 0:
        // The caller saw 'P'; the space after "PROXY" is part of the prefix.
        if (field_complete ? field != "PROXY" : !IsPrefixOf(field, "PROXY")) {
          return Invalid("not a PROXY protocol header");
        }
        break;
      case 1:
        if (field_complete) {
          if (field == "TCP4") {
            protocol = Protocol::kTcp4;
          } else if (field == "TCP6") {
            protocol = Protocol::kTcp6;
          } else if (field == "UNKNOWN") {
            protocol = Protocol::kUnknown;
          } else {
            return Invalid("PROXY v1 header has an unknown protocol");
          }
        } else if (!IsPrefixOf(field, "TCP4") && !IsPrefixOf(field, "TCP6") &&
                   !IsPrefixOf(field, "UNKNOWN")) {
          return Invalid("PROXY v1 header has an unknown protocol");
        }
        break;
      case 2:
      case 3:
        if ((field_complete && field.empty()) ||
            !CheckV1Address(field, protocol == Protocol::kTcp6, field_complete,
                            index == 2 ? &result.source_ip : &result.dest_ip)) {
          return Invalid("PROXY v1 header has a bad address");
        }
        break;
      case 4:
      case 5:
        if (!CheckV1Port(field, field_complete,
                         index == 4 ? &result.source_port : &result.dest_port)) {
          return Invalid("PROXY v1 header has a bad port");
        }
        break;
      default:
        return Invalid("PROXY v1 header has too many fields");
    }
    // The spec: with UNKNOWN, whatever follows up to the CRLF is ignored.
    if (last || protocol == Protocol::kUnknown) break;
    start = space + 1;
  }

  if (complete && protocol != Protocol::kUnknown && index != 5) {
    return Invalid("PROXY v1 header has too few fields");
  }
  if (!complete || eol + 1 >= in.size()) return NeedMore();
  if (protocol == Protocol::kUnknown) return DoneLocal(eol + 2);
  result.status = Status::kDone;
  result.consumed = eol + 2;
  return result;
}

// --- version 2 ---

ProxyParseResult ParseV2(std::string_view in) {
  const size_t signature_bytes = std::min(in.size(), kV2Signature.size());
  if (in.substr(0, signature_bytes) != kV2Signature.substr(0, signature_bytes)) {
    return Invalid("not a PROXY protocol header");
  }
  if (in.size() < 13) return NeedMore();
  const uint8_t version_command = Byte(in, 12);
  if (version_command >> 4 != 2) return Invalid("PROXY v2 header has an unsupported version");
  const uint8_t command = version_command & 0x0f;
  if (command != kV2Local && command != kV2Proxy) {
    return Invalid("PROXY v2 header has an unknown command");
  }
  if (in.size() < 14) return NeedMore();
  // LOCAL ignores the family, as the spec says.
  const uint8_t family = Byte(in, 13);
  if (command == kV2Proxy && family != kV2Unspec && family != kV2Tcp4 && family != kV2Tcp6) {
    return Invalid("PROXY v2 header has an unsupported address family");
  }
  if (in.size() < kV2FixedSize) return NeedMore();
  const size_t end = kV2FixedSize + BigEndian16(in, 14);
  if (end > kMaxProxyHeaderSize) return Invalid("PROXY v2 header too long");

  if (command == kV2Local) {
    if (in.size() < end) return NeedMore();
    return DoneLocal(end);
  }

  const size_t address_size = family == kV2Tcp4   ? kV2Tcp4AddressSize
                              : family == kV2Tcp6 ? kV2Tcp6AddressSize
                                                  : 0;
  if (end < kV2FixedSize + address_size) {
    return Invalid("PROXY v2 header too short for its address family");
  }
  // Walk the TLVs that have arrived, so an overrun is caught before the rest
  // of the header is waited for.
  const size_t available = std::min(in.size(), end);
  size_t pos = kV2FixedSize + address_size;
  while (pos + kTlvHeaderSize <= available) {
    pos += kTlvHeaderSize + BigEndian16(in, pos + 1);
    if (pos > end) return Invalid("PROXY v2 TLV overruns the header");
  }
  if (pos < end && pos + kTlvHeaderSize > end) {
    return Invalid("PROXY v2 header ends inside a TLV header");
  }
  if (in.size() < end) return NeedMore();

  if (family == kV2Unspec) return DoneLocal(end);
  ProxyParseResult result;
  result.status = Status::kDone;
  result.consumed = end;
  const auto* bytes = reinterpret_cast<const uint8_t*>(in.data()) + kV2FixedSize;
  size_t ports = 0;
  if (family == kV2Tcp4) {
    result.source_ip = FormatV4(bytes);
    result.dest_ip = FormatV4(bytes + 4);
    ports = kV2FixedSize + 8;
  } else {
    result.source_ip = FormatV6(bytes);
    result.dest_ip = FormatV6(bytes + 16);
    ports = kV2FixedSize + 32;
  }
  result.source_port = BigEndian16(in, ports);
  result.dest_port = BigEndian16(in, ports + 2);
  return result;
}

}  // namespace

ProxyParseResult ParseProxyHeader(std::string_view buffered) {
  if (buffered.empty()) return NeedMore();
  // The two versions differ in their first byte.
  if (buffered[0] == kV1Prefix[0]) return ParseV1(buffered);
  if (buffered[0] == kV2Signature[0]) return ParseV2(buffered);
  return Invalid("not a PROXY protocol header");
}

}  // namespace postern::engine
