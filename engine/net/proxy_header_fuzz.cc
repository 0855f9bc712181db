// libFuzzer target for ParseProxyHeader: never crashes, verdicts are final
// (more bytes never change kDone or kInvalid), a header is recognised however
// it is cut, and what it reports is a well-formed address that survives
// re-encoding as a v2 header.
#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "engine/net/proxy_header.h"

namespace {

using postern::engine::kMaxProxyHeaderSize;
using postern::engine::ParseProxyHeader;
using postern::engine::ProxyParseResult;
using Status = ProxyParseResult::Status;

// Not assert(): fuzz builds may define NDEBUG.
void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant violated: %s\n", what);
    std::abort();
  }
}

bool Same(const ProxyParseResult& a, const ProxyParseResult& b) {
  return a.status == b.status && a.consumed == b.consumed && a.local == b.local &&
         a.source_ip == b.source_ip && a.dest_ip == b.dest_ip && a.source_port == b.source_port &&
         a.dest_port == b.dest_port && a.error == b.error;
}

// Parses reported address text back to 16 bytes (IPv4 as ::ffff:a.b.c.d).
// Reported text is canonical: IPv4 for mapped addresses, inet_ntop otherwise.
bool ToBytes(const std::string& text, uint8_t out[16], bool* is_v4) {
  std::memset(out, 0, 16);
  if (inet_pton(AF_INET, text.c_str(), out + 12) == 1) {
    out[10] = out[11] = 0xff;
    *is_v4 = true;
    return true;
  }
  *is_v4 = false;
  if (inet_pton(AF_INET6, text.c_str(), out) != 1) return false;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(out, kMapped, 12) == 0) return false;  // should have been shown as IPv4
  char canonical[INET6_ADDRSTRLEN];
  inet_ntop(AF_INET6, out, canonical, sizeof(canonical));
  return text == canonical;
}

void Append16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v & 0xff));
}

// The same facts as a v2 header; parsing it must report them unchanged.
void CheckReencoding(const ProxyParseResult& r) {
  uint8_t src[16];
  uint8_t dst[16];
  bool src_v4 = false;
  bool dst_v4 = false;
  Check(ToBytes(r.source_ip, src, &src_v4), "source address is canonical text");
  Check(ToBytes(r.dest_ip, dst, &dst_v4), "destination address is canonical text");
  const bool v4 = src_v4 && dst_v4;
  std::string header("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A\x21", 13);
  header.push_back(v4 ? '\x11' : '\x21');
  Append16(&header, v4 ? 12 : 36);
  const size_t offset = v4 ? 12 : 0;
  header.append(reinterpret_cast<const char*>(src) + offset, 16 - offset);
  header.append(reinterpret_cast<const char*>(dst) + offset, 16 - offset);
  Append16(&header, r.source_port);
  Append16(&header, r.dest_port);
  const ProxyParseResult again = ParseProxyHeader(header);
  Check(again.status == Status::kDone && again.consumed == header.size(), "re-encoding parses");
  Check(again.source_ip == r.source_ip && again.dest_ip == r.dest_ip &&
            again.source_port == r.source_port && again.dest_port == r.dest_port,
        "re-encoding keeps the addresses");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const ProxyParseResult r = ParseProxyHeader(input);

  switch (r.status) {
    case Status::kNeedMore:
      Check(size < kMaxProxyHeaderSize, "the verdict comes within the size cap");
      Check(r.consumed == 0 && r.error.empty(), "kNeedMore carries nothing");
      break;
    case Status::kInvalid:
      Check(!r.error.empty() && r.consumed == 0, "kInvalid says why and consumes nothing");
      for (unsigned char c : r.error) Check(c >= 0x20 && c < 0x7f, "error is printable");
      break;
    case Status::kDone: {
      Check(r.consumed > 0 && r.consumed <= size && r.consumed <= kMaxProxyHeaderSize,
            "consumed lies within the input and the cap");
      Check(r.error.empty(), "kDone has no error");
      // The header alone gives the same answer: nothing after it was read.
      Check(Same(ParseProxyHeader(input.substr(0, r.consumed)), r), "header alone parses alike");
      // Cut one byte short (and at a point picked by the input) it is incomplete.
      Check(ParseProxyHeader(input.substr(0, r.consumed - 1)).status == Status::kNeedMore,
            "one byte short needs more");
      const size_t cut = size > 0 ? data[size - 1] % r.consumed : 0;
      Check(ParseProxyHeader(input.substr(0, cut)).status == Status::kNeedMore,
            "a prefix needs more");
      if (r.local) {
        Check(r.source_ip.empty() && r.dest_ip.empty() && r.source_port == 0 && r.dest_port == 0,
              "local reports no addresses");
      } else {
        CheckReencoding(r);
      }
      break;
    }
  }

  // Verdicts are final: the same bytes plus more give the same answer (the
  // error text may differ: another rule can fire first on the longer input).
  if (r.status != Status::kNeedMore) {
    std::string longer(input);
    longer.append("\r\n\0PROXY ", 10);
    const ProxyParseResult after = ParseProxyHeader(longer);
    Check(after.status == r.status, "a verdict does not change with more input");
    Check(r.status != Status::kDone || Same(after, r), "kDone does not change with more input");
  }
  return 0;
}
