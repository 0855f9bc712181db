#include "engine/net/proxy_header.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace postern::engine {
namespace {

using Status = ProxyParseResult::Status;

const std::string kSignature("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);

std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out.push_back(static_cast<char>(b));
  return out;
}

std::string BigEndian16(size_t value) {
  return Bytes({static_cast<int>(value >> 8 & 0xff), static_cast<int>(value & 0xff)});
}

// A v2 header: signature, version/command, family, length, then `payload`
// (addresses and TLVs). `length` overrides the length field when given.
std::string V2(int version_command, int family, const std::string& payload, int length = -1) {
  return kSignature + Bytes({version_command, family}) +
         BigEndian16(length < 0 ? payload.size() : static_cast<size_t>(length)) + payload;
}

std::string Tlv(int type, const std::string& value) {
  return Bytes({type}) + BigEndian16(value.size()) + value;
}

// 192.0.2.1:56324 -> 198.51.100.2:25
const std::string kTcp4Addresses =
    Bytes({192, 0, 2, 1, 198, 51, 100, 2}) + BigEndian16(56324) + BigEndian16(25);

// 2001:db8::1:443 -> 2001:db8::2:587
const std::string kTcp6Addresses =
    Bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,  //
           0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}) +
    BigEndian16(443) + BigEndian16(587);

ProxyParseResult Parse(std::string_view in) { return ParseProxyHeader(in); }

void ExpectInvalid(std::string_view in) {
  const ProxyParseResult r = Parse(in);
  EXPECT_EQ(r.status, Status::kInvalid) << "input: " << testing::PrintToString(std::string(in));
  EXPECT_FALSE(r.error.empty());
  EXPECT_EQ(r.consumed, 0u);
}

void ExpectNeedMore(std::string_view in) {
  const ProxyParseResult r = Parse(in);
  EXPECT_EQ(r.status, Status::kNeedMore)
      << "input: " << testing::PrintToString(std::string(in)) << " error: " << r.error;
}

// Every strict prefix of `header` asks for more; the whole header (and the
// header followed by `after`) parses to the same result, consuming exactly
// the header.
ProxyParseResult ExpectHeader(const std::string& header, const std::string& after = "EHLO a\r\n") {
  for (size_t n = 0; n < header.size(); ++n) {
    const ProxyParseResult r = Parse(std::string_view{header}.substr(0, n));
    EXPECT_EQ(r.status, Status::kNeedMore)
        << "prefix of " << n << " bytes of " << testing::PrintToString(header)
        << " error: " << r.error;
  }
  ProxyParseResult whole = Parse(header);
  EXPECT_EQ(whole.status, Status::kDone) << testing::PrintToString(header) << " " << whole.error;
  EXPECT_EQ(whole.consumed, header.size());
  const ProxyParseResult followed = Parse(header + after);
  EXPECT_EQ(followed.status, Status::kDone);
  EXPECT_EQ(followed.consumed, header.size());
  EXPECT_EQ(followed.local, whole.local);
  EXPECT_EQ(followed.source_ip, whole.source_ip);
  EXPECT_EQ(followed.dest_ip, whole.dest_ip);
  EXPECT_EQ(followed.source_port, whole.source_port);
  EXPECT_EQ(followed.dest_port, whole.dest_port);
  return whole;
}

// --- version 1 ---

TEST(ProxyHeaderTest, V1Tcp4) {
  const ProxyParseResult r = ExpectHeader("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n");
  EXPECT_FALSE(r.local);
  EXPECT_EQ(r.source_ip, "192.0.2.1");
  EXPECT_EQ(r.dest_ip, "198.51.100.2");
  EXPECT_EQ(r.source_port, 56324);
  EXPECT_EQ(r.dest_port, 25);
  EXPECT_TRUE(r.error.empty());
}

TEST(ProxyHeaderTest, V1Tcp6IsCanonicalized) {
  const ProxyParseResult r = ExpectHeader("PROXY TCP6 2001:DB8:0::1 2001:db8::2 0 65535\r\n");
  EXPECT_FALSE(r.local);
  EXPECT_EQ(r.source_ip, "2001:db8::1");
  EXPECT_EQ(r.dest_ip, "2001:db8::2");
  EXPECT_EQ(r.source_port, 0);
  EXPECT_EQ(r.dest_port, 65535);
}

TEST(ProxyHeaderTest, V1Tcp6MappedReadsAsIpv4) {
  const ProxyParseResult r = ExpectHeader("PROXY TCP6 ::ffff:192.0.2.7 ::1 1000 25\r\n");
  EXPECT_EQ(r.source_ip, "192.0.2.7");
  EXPECT_EQ(r.dest_ip, "::1");
}

TEST(ProxyHeaderTest, V1UnknownIsLocal) {
  for (const std::string header : {
           "PROXY UNKNOWN\r\n",
           "PROXY UNKNOWN 192.0.2.1 198.51.100.2 1 2\r\n",
           "PROXY UNKNOWN anything at all, even \x01\xff bytes\r\n",
       }) {
    const ProxyParseResult r = ExpectHeader(header);
    EXPECT_TRUE(r.local) << header;
    EXPECT_TRUE(r.source_ip.empty());
    EXPECT_TRUE(r.dest_ip.empty());
    EXPECT_EQ(r.source_port, 0);
  }
}

TEST(ProxyHeaderTest, V1LongestHeaderIs107Bytes) {
  const std::string full_v6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  // The spec's worst case, exactly 107 bytes.
  const std::string longest = "PROXY UNKNOWN " + full_v6 + " " + full_v6 + " 65535 65535\r\n";
  ASSERT_EQ(longest.size(), kMaxProxyV1HeaderSize);
  EXPECT_TRUE(ExpectHeader(longest).local);

  const std::string tcp6 = "PROXY TCP6 " + full_v6 + " " + full_v6 + " 65535 65535\r\n";
  EXPECT_EQ(ExpectHeader(tcp6).source_ip, full_v6);

  // One byte more: the CR is the 107th byte and the LF cannot fit.
  ExpectInvalid("PROXY UNKNOWN " + full_v6 + " " + full_v6 + " 65535 655355\r\n");
}

TEST(ProxyHeaderTest, V1WithoutCrlfWithin107Bytes) {
  const std::string filler = "PROXY UNKNOWN " + std::string(200, 'x');
  ExpectNeedMore(filler.substr(0, kMaxProxyV1HeaderSize - 1));
  ExpectInvalid(filler.substr(0, kMaxProxyV1HeaderSize));
  ExpectInvalid(filler);
  // The CR may be the 106th byte (then the LF is the 107th) but no later.
  ExpectNeedMore(filler.substr(0, kMaxProxyV1HeaderSize - 2) + "\r");
  ExpectInvalid(filler.substr(0, kMaxProxyV1HeaderSize - 1) + "\r");
  // Valid addresses that are too long together.
  const std::string long_v6 = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
  ExpectInvalid("PROXY TCP6 " + long_v6 + " " + long_v6 + " 1 2\r\n");
}

TEST(ProxyHeaderTest, V1BadPorts) {
  for (const std::string port :
       {"65536", "99999", "123456", "-1", "+1", "01", "00", "1a", "0x10", "", " 1", "25 "}) {
    ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 " + port + " 25\r\n");
    ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 25 " + port + "\r\n");
  }
}

TEST(ProxyHeaderTest, V1BadAddresses) {
  for (const std::string addresses : {
           "::1 ::2",                     // IPv6 under TCP4
           "192.0.2.1 ::2",               // mixed
           "256.0.0.1 192.0.2.2",         // octet out of range
           "192.0.2 192.0.2.2",           // too few octets
           "192.0.2.1.5 192.0.2.2",       // too many octets
           "192.000.2.1 192.0.2.2",       // leading zeros
           "localhost 192.0.2.2",         // names are not addresses
           "192.0.2.1  192.0.2.2",        // double space
           "192.0.2.1 192.0.2.2 1 2 3 4"  // extra fields (with the ports below)
       }) {
    ExpectInvalid("PROXY TCP4 " + addresses + " 1 2\r\n");
  }
  for (const std::string addresses : {
           "192.0.2.1 192.0.2.2",  // IPv4 under TCP6
           "2001:db8::1::2 ::1",   // two "::"
           "2001:db8:g::1 ::1",    // not hex
           "[::1] ::2",            // brackets are URL syntax
           "fe80::1%eth0 ::2",     // zone ids are local to the proxy
       }) {
    ExpectInvalid("PROXY TCP6 " + addresses + " 1 2\r\n");
  }
}

TEST(ProxyHeaderTest, V1FramingErrors) {
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n");      // bare LF
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX");     // CR without LF
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n");   // trailing space
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n");      // too few fields
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n");  // too many fields
  ExpectInvalid("PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n");   // double space
  ExpectInvalid("PROXY\tTCP4 192.0.2.1 198.51.100.2 1 2\r\n");   // tab
  ExpectInvalid("proxy tcp4 192.0.2.1 198.51.100.2 1 2\r\n");    // lower case
  ExpectInvalid("PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n");    // lower-case protocol
  ExpectInvalid("PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n");    // no such protocol
  ExpectInvalid("PROXY UNKNOWNX\r\n");                           // not UNKNOWN
  ExpectInvalid("PROXY\r\n");
  ExpectInvalid("PROXY \r\n");
  ExpectInvalid("PROXY TCP4\r\n");
}

// --- garbage and early rejection ---

TEST(ProxyHeaderTest, EmptyNeedsMore) { ExpectNeedMore(""); }

TEST(ProxyHeaderTest, GarbageIsInvalidAtTheFirstWrongByte) {
  // A client that speaks first, or a listener misconfigured for PROXY.
  const std::string_view garbages[] = {"EHLO mail.example.com\r\n",
                                       "HELO x\r\n",
                                       "GET / HTTP/1.1\r\n",
                                       "\x16\x03\x01",
                                       "\n",
                                       " PROXY",
                                       std::string_view("\0", 1)};
  for (std::string_view garbage : garbages) {
    ExpectInvalid(garbage.substr(0, 1));
    ExpectInvalid(garbage);
  }
  ExpectNeedMore("PROX");
  ExpectInvalid("PROXZ");
  ExpectInvalid("PROXY_");
  ExpectNeedMore("PROXY TCP");
  ExpectInvalid("PROXY TCP5");
  ExpectNeedMore("PROXY UNKN");
  ExpectInvalid("PROXY UNKX");
  ExpectNeedMore(std::string_view("\r\n\r\n\0\r\nQUI", 10));
  ExpectInvalid(std::string_view("\r\n\r\n\0\r\nQUIX", 11));
  ExpectInvalid("\r\n\r\nEHLO");
}

TEST(ProxyHeaderTest, V1FieldsAreRejectedBeforeTheLineEnds) {
  ExpectNeedMore("PROXY TCP4 192.0.2.1 198.51.100.2 655");
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 65536");  // can only grow
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 123456");
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 1x");
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 01");
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 ");
  ExpectInvalid("PROXY TCP4 ::1");  // ':' in an IPv4 field
  ExpectInvalid("PROXY TCP4 192.0.2.1x");
  ExpectInvalid("PROXY TCP4 1111111111111111");  // longer than any IPv4 text
  ExpectInvalid("PROXY TCP4 300.0.0.1 ");        // the field is judged at its space
  ExpectInvalid("PROXY TCP6 2001:db8::g");
  // The CR ends the line, so the line is judged before its LF arrives.
  ExpectNeedMore("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r");
  ExpectInvalid("PROXY TCP4 192.0.2.1 198.51.100.2 1\r");
}

// --- version 2 ---

TEST(ProxyHeaderTest, V2ProxyTcp4) {
  const ProxyParseResult r = ExpectHeader(V2(0x21, 0x11, kTcp4Addresses));
  EXPECT_FALSE(r.local);
  EXPECT_EQ(r.source_ip, "192.0.2.1");
  EXPECT_EQ(r.dest_ip, "198.51.100.2");
  EXPECT_EQ(r.source_port, 56324);
  EXPECT_EQ(r.dest_port, 25);
}

TEST(ProxyHeaderTest, V2ProxyTcp6) {
  const ProxyParseResult r = ExpectHeader(V2(0x21, 0x21, kTcp6Addresses));
  EXPECT_FALSE(r.local);
  EXPECT_EQ(r.source_ip, "2001:db8::1");
  EXPECT_EQ(r.dest_ip, "2001:db8::2");
  EXPECT_EQ(r.source_port, 443);
  EXPECT_EQ(r.dest_port, 587);
}

TEST(ProxyHeaderTest, V2Tcp6MappedSourceReadsAsIpv4) {
  const std::string mapped = Bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4});
  const std::string v6 = Bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9});
  const ProxyParseResult r =
      ExpectHeader(V2(0x21, 0x21, mapped + v6 + BigEndian16(1) + BigEndian16(2)));
  EXPECT_EQ(r.source_ip, "1.2.3.4");
  EXPECT_EQ(r.dest_ip, "2001:db8::9");
  // IPv4-compatible (::1.2.3.4, deprecated) is not mapped and stays IPv6.
  const std::string compatible = Bytes({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4});
  EXPECT_EQ(
      ExpectHeader(V2(0x21, 0x21, compatible + v6 + BigEndian16(1) + BigEndian16(2))).source_ip,
      "::1.2.3.4");
}

TEST(ProxyHeaderTest, V2LocalIgnoresFamilyAndAddresses) {
  EXPECT_TRUE(ExpectHeader(V2(0x20, 0x00, "")).local);
  // A health check that still carries addresses, TLVs, or even a family we
  // would refuse for PROXY: LOCAL discards the block unread.
  const ProxyParseResult r = ExpectHeader(V2(0x20, 0x11, kTcp4Addresses));
  EXPECT_TRUE(r.local);
  EXPECT_TRUE(r.source_ip.empty());
  EXPECT_TRUE(ExpectHeader(V2(0x20, 0x31, std::string(216, 'x'))).local);
  EXPECT_TRUE(ExpectHeader(V2(0x20, 0x00, "\x01")).local);
}

TEST(ProxyHeaderTest, V2ProxyUnspecIsLocal) {
  EXPECT_TRUE(ExpectHeader(V2(0x21, 0x00, "")).local);
  EXPECT_TRUE(ExpectHeader(V2(0x21, 0x00, Tlv(0x04, ""))).local);
}

TEST(ProxyHeaderTest, V2TlvsAreSkipped) {
  const std::string tlvs = Tlv(0x01, "smtp") +                 // ALPN
                           Tlv(0x02, "mx.example.com") +       // authority
                           Tlv(0x04, "") +                     // NOOP, empty
                           Tlv(0x20, std::string(300, 'z')) +  // SSL, long
                           Tlv(0xEA, "vpce-0123456789");       // AWS
  const ProxyParseResult r = ExpectHeader(V2(0x21, 0x11, kTcp4Addresses + tlvs));
  EXPECT_EQ(r.source_ip, "192.0.2.1");
  EXPECT_EQ(r.source_port, 56324);
  EXPECT_EQ(ExpectHeader(V2(0x21, 0x21, kTcp6Addresses + tlvs)).dest_port, 587);
}

TEST(ProxyHeaderTest, V2TlvsMustTileTheLength) {
  // A TLV whose length runs past the header.
  const std::string overrun = Bytes({0x01}) + BigEndian16(10) + "abc";
  ExpectInvalid(V2(0x21, 0x11, kTcp4Addresses + overrun));
  // Caught as soon as its 3-byte header arrives, without waiting for the rest.
  const std::string early =
      V2(0x21, 0x11, kTcp4Addresses + Bytes({0x01}) + BigEndian16(200) + std::string(100, 'p'));
  ExpectInvalid(std::string_view{early}.substr(0, 16 + 12 + 3));
  ExpectNeedMore(std::string_view{early}.substr(0, 16 + 12 + 2));
  // One or two stray bytes after the last TLV cannot be a TLV header.
  ExpectInvalid(V2(0x21, 0x11, kTcp4Addresses + Tlv(0x04, "x") + "\x01"));
  ExpectInvalid(V2(0x21, 0x11, kTcp4Addresses + Tlv(0x04, "x") + std::string("\x01\x00", 2)));
  ExpectInvalid(V2(0x21, 0x00, "\x04"));
}

TEST(ProxyHeaderTest, V2LengthLimits) {
  // The length field alone condemns an oversized header.
  const std::string too_long = V2(0x21, 0x11, "", kMaxProxyHeaderSize - 16 + 1);
  ExpectInvalid(too_long);
  ExpectInvalid(V2(0x20, 0x00, "", 0xffff));
  // Exactly the cap is fine.
  const std::string longest = V2(
      0x21, 0x11, kTcp4Addresses + Tlv(0x04, std::string(kMaxProxyHeaderSize - 16 - 12 - 3, 'n')));
  ASSERT_EQ(longest.size(), kMaxProxyHeaderSize);
  EXPECT_EQ(ExpectHeader(longest).source_ip, "192.0.2.1");
  // Shorter than the family's addresses.
  ExpectInvalid(V2(0x21, 0x11, kTcp4Addresses.substr(0, 11)));
  ExpectInvalid(V2(0x21, 0x21, kTcp4Addresses));
  ExpectInvalid(V2(0x21, 0x21, "", 35));
}

TEST(ProxyHeaderTest, V2TruncatedNeedsMore) {
  const std::string header = V2(0x21, 0x21, kTcp6Addresses + Tlv(0x01, "smtp"));
  for (size_t n = 0; n < header.size(); ++n) ExpectNeedMore(header.substr(0, n));
}

TEST(ProxyHeaderTest, V2BadVersionCommandFamily) {
  ExpectInvalid(V2(0x11, 0x11, kTcp4Addresses));  // version 1 in binary form
  ExpectInvalid(V2(0x31, 0x11, kTcp4Addresses));  // version 3
  ExpectInvalid(V2(0x22, 0x11, kTcp4Addresses));  // command 2
  ExpectInvalid(V2(0x2f, 0x11, kTcp4Addresses));
  ExpectInvalid(V2(0x21, 0x12, kTcp4Addresses));       // UDP over IPv4
  ExpectInvalid(V2(0x21, 0x22, kTcp6Addresses));       // UDP over IPv6
  ExpectInvalid(V2(0x21, 0x31, std::string(216, 0)));  // AF_UNIX stream
  ExpectInvalid(V2(0x21, 0x10, kTcp4Addresses));       // IPv4, protocol unspecified
  ExpectInvalid(V2(0x21, 0x41, kTcp4Addresses));       // no such family
  // Each is refused as soon as the offending byte arrives.
  ExpectInvalid(kSignature + "\x11");
  ExpectInvalid(kSignature + "\x21\x12");
}

TEST(ProxyHeaderTest, BytesAfterTheHeaderAreNotConsumed) {
  const std::string v1 = "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n";
  const std::string v2 = V2(0x21, 0x11, kTcp4Addresses);
  // Whatever follows, even another header, belongs to the session.
  for (const std::string& after :
       {std::string("EHLO a\r\n"), v1, v2, std::string("\0\xff", 2), std::string(5000, 'x')}) {
    EXPECT_EQ(Parse(v1 + after).consumed, v1.size());
    EXPECT_EQ(Parse(v2 + after).consumed, v2.size());
    EXPECT_EQ(Parse(V2(0x20, 0x00, "") + after).consumed, 16u);
    EXPECT_EQ(Parse("PROXY UNKNOWN\r\n" + after).consumed, 15u);
  }
}

// A verdict never changes when more bytes arrive: kDone and kInvalid are final.
TEST(ProxyHeaderTest, VerdictsAreStableUnderMoreInput) {
  const std::vector<std::string> inputs = {
      "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\nQUIT\r\n",
      "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\r\n",
      "PROXY TCP6 ::1 ::2 1 99999\r\n",
      "PROXY UNKNOWN x\r\n",
      "EHLO x\r\n",
      V2(0x21, 0x11, kTcp4Addresses + Tlv(1, "x")) + "QUIT\r\n",
      V2(0x21, 0x11, kTcp4Addresses + Bytes({1, 0, 9})),
      V2(0x20, 0x00, "abc") + "x",
  };
  for (const std::string& input : inputs) {
    ProxyParseResult first;
    size_t first_at = 0;
    for (size_t n = 0; n <= input.size(); ++n) {
      const ProxyParseResult r = Parse(std::string_view{input}.substr(0, n));
      if (first.status == Status::kNeedMore) {
        first = r;
        first_at = n;
        continue;
      }
      EXPECT_EQ(r.status, first.status) << testing::PrintToString(input) << " at " << n;
      EXPECT_EQ(r.consumed, first.consumed);
      EXPECT_EQ(r.source_ip, first.source_ip);
    }
    EXPECT_NE(first.status, Status::kNeedMore) << testing::PrintToString(input);
    EXPECT_LE(first_at, input.size());
  }
}

}  // namespace
}  // namespace postern::engine
