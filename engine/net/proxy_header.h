// ParseProxyHeader: the HAProxy PROXY protocol header (versions 1 and 2) that
// a load balancer sends before the client's first byte, carrying the real
// client address. Pure: bytes in, a verdict out; no I/O, no allocation beyond
// the result's strings, no state between calls.
//
// Use: on a listener with proxy_protocol enabled, append received bytes to a
// buffer and call ParseProxyHeader(buffer) after every read:
//   kNeedMore -> read more (the buffer never needs more than
//                kMaxProxyHeaderSize bytes; by then the verdict is kDone or
//                kInvalid)
//   kDone     -> drop `consumed` bytes; what follows is the client's SMTP
//                stream and belongs to the session
//   kInvalid  -> close without a reply: the peer is not a proxy speaking the
//                protocol, and anything we said would reach a client we could
//                not identify
// The verdict is a function of the bytes alone, so calling it again on a
// longer buffer never changes a kDone or kInvalid answer.
//
// Strictness (the sender is our own load balancer, so there is no reason to
// be liberal, and every accepted header decides which address the relay
// trusts):
//  - kNeedMore only while the bytes so far can still begin a valid header.
//    A byte that cannot belong to the field it falls in makes the verdict
//    kInvalid at once ("EHLO" at its first byte, a letter in a port, a v2
//    length over the cap); a field's full syntax (an address, say) is checked
//    when the space or CR that ends it arrives.
//  - v1: exactly "PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n" with single
//    spaces, at most 107 bytes including CRLF; addresses must be of the named
//    family (inet_pton syntax); ports are decimal 0..65535 without leading
//    zeros. "PROXY UNKNOWN<anything but CR/LF>\r\n" is accepted as local.
//  - v2: version 2 only; commands LOCAL (0x20) and PROXY (0x21). PROXY with
//    family/protocol TCP4 (0x11) or TCP6 (0x21) yields the addresses; PROXY
//    with UNSPEC (0x00) is accepted as local, as the spec allows; UDP and
//    AF_UNIX are kInvalid (an SMTP relay has no use for them, and reading them
//    as local would credit the client with the proxy's address). LOCAL
//    ignores the family and the whole address block, as the spec requires.
//  - v2 TLVs after the addresses are walked and must tile the declared length
//    exactly; their contents (including PP2_TYPE_CRC32C) are not interpreted.
//  - v2 headers longer than kMaxProxyHeaderSize in total are kInvalid as soon
//    as the length field arrives. Addresses alone need at most 16 + 36 bytes;
//    4096 leaves room for the TLVs real balancers send (TLS details, cloud
//    endpoint ids) while bounding what we buffer per connection.
//  - Addresses are reported in canonical inet_ntop text; an IPv4-mapped IPv6
//    address (::ffff:a.b.c.d) is reported as "a.b.c.d", matching how the
//    worker reports a direct peer (engine/net/socket_address.h).
//
// Security note for callers: `local` means "use the socket's own peer
// address", which is the proxy's. A proxy address must therefore not be in
// relay.trusted_networks, or a v1 UNKNOWN / v2 LOCAL header would make any
// client a trusted one.
#ifndef POSTERN_ENGINE_NET_PROXY_HEADER_H_
#define POSTERN_ENGINE_NET_PROXY_HEADER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace postern::engine {

// The largest v1 header: "PROXY TCP6 " + two full IPv6 addresses + ports +
// CRLF, as fixed by the protocol specification.
inline constexpr size_t kMaxProxyV1HeaderSize = 107;
// The largest header of either version we accept (see above).
inline constexpr size_t kMaxProxyHeaderSize = 4096;

struct ProxyParseResult {
  enum class Status {
    kNeedMore,  // a valid prefix so far; call again with more bytes
    kDone,      // a complete header of `consumed` bytes
    kInvalid,   // not a valid header; `error` says why
  };
  Status status = Status::kNeedMore;
  // Header bytes, set with kDone only. Bytes after them are not looked at.
  size_t consumed = 0;
  // kDone without addresses (v1 UNKNOWN, v2 LOCAL, v2 PROXY UNSPEC): use the
  // connection's own endpoints. The address fields are then empty/zero.
  bool local = false;
  std::string source_ip;  // the client
  std::string dest_ip;    // the address the client connected to
  uint16_t source_port = 0;
  uint16_t dest_port = 0;
  // kInvalid only: a short fixed description, safe to log (never peer bytes).
  std::string error;
};

ProxyParseResult ParseProxyHeader(std::string_view buffered);

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_NET_PROXY_HEADER_H_
