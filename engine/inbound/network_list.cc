#include "engine/inbound/network_list.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/absl_compat.h"

namespace postern::engine {
namespace {

using Address = std::array<uint8_t, 16>;

// Parses a textual IPv4 or IPv6 address into IPv6 form (IPv4 as ::ffff:a.b.c.d).
// Sets *is_v4 for dotted-quad input, whose prefix lengths are offset by 96.
std::optional<Address> ParseAddress(std::string_view text, bool* is_v4) {
  // inet_pton needs a NUL-terminated string; addresses are short.
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buf)) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  Address out{};
  in_addr v4;
  if (inet_pton(AF_INET, buf, &v4) == 1) {
    out[10] = 0xff;
    out[11] = 0xff;
    std::memcpy(out.data() + 12, &v4, 4);
    *is_v4 = true;
    return out;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, buf, &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    *is_v4 = false;
    return out;
  }
  return std::nullopt;
}

bool PrefixMatches(const Address& a, const Address& b, int prefix_length) {
  const int full = prefix_length / 8;
  if (std::memcmp(a.data(), b.data(), full) != 0) return false;
  const int bits = prefix_length % 8;
  if (bits == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - bits));
  return (a[full] & mask) == (b[full] & mask);
}

bool HostBitsZero(const Address& a, int prefix_length) {
  for (int bit = prefix_length; bit < 128; ++bit) {
    if (a[bit / 8] & (0x80 >> (bit % 8))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<NetworkList> NetworkList::Create(const std::vector<std::string>& networks,
                                                std::string_view what) {
  NetworkList list;
  for (const std::string& cidr : networks) {
    const size_t slash = cidr.find('/');
    bool is_v4 = false;
    const std::optional<Address> address =
        ParseAddress(std::string_view(cidr).substr(0, slash), &is_v4);
    if (!address) {
      return absl::InvalidArgumentError(absl::StrCat("bad ", Absl(what), " \"", cidr, "\""));
    }
    const int max_prefix = is_v4 ? 32 : 128;
    int prefix = max_prefix;
    if (slash != std::string::npos) {
      const std::string_view digits = std::string_view(cidr).substr(slash + 1);
      if (digits.empty() || digits.size() > 3 ||
          !std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit) ||
          !absl::SimpleAtoi(Absl(digits), &prefix) || prefix > max_prefix) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad prefix length in ", Absl(what), " \"", cidr, "\""));
      }
    }
    if (is_v4) prefix += 96;
    if (!HostBitsZero(*address, prefix)) {
      return absl::InvalidArgumentError(
          absl::StrCat(Absl(what), " \"", cidr, "\" has host bits set"));
    }
    list.networks_.push_back(Network{*address, prefix});
  }
  return list;
}

bool NetworkList::Contains(std::string_view ip) const {
  bool is_v4 = false;
  const std::optional<Address> address = ParseAddress(ip, &is_v4);
  if (!address) return false;
  for (const Network& network : networks_) {
    if (PrefixMatches(*address, network.address, network.prefix_length)) return true;
  }
  return false;
}

}  // namespace postern::engine
