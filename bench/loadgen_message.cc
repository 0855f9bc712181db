#include "bench/loadgen_message.h"

#include <time.h>

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace postern::bench {
namespace {

// 77 characters: a filler line after its first character, without CRLF.
constexpr std::string_view kFiller =
    "The quick brown fox jumps over the lazy dog; postern-loadgen filler text 0123";
static_assert(kFiller.size() == 77);

constexpr size_t kLine = 80;  // a full filler line, CRLF included

absl::StatusOr<uint64_t> ParseCount(std::string_view text, const char* what) {
  uint64_t n = 0;
  if (!absl::SimpleAtoi(absl::string_view(text.data(), text.size()), &n) ||
      text.find_first_not_of("0123456789") != std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad ", what, " \"", std::string(text), "\""));
  }
  return n;
}

// Appends `rem` octets of filler lines (rem >= 2), ending in CRLF.
void AppendFiller(size_t rem, std::string* out) {
  size_t line = 0;
  while (rem > 0) {
    if (rem <= kLine + 2) {
      // The last line takes what is left: up to 80 characters.
      for (size_t i = 0; i + 2 < rem; ++i) out->push_back(kFiller[i % kFiller.size()]);
      out->append("\r\n");
      return;
    }
    const size_t kind = line++ % 16;
    if (kind == 7 && rem > kLine + 5) {
      out->append(".\r\n");  // a lone dot: would end DATA if not stuffed
      rem -= 3;
      continue;
    }
    if (kind == 3) {
      out->append("..");  // leading dots: stuffed to "..." on the wire
      out->append(kFiller.substr(0, kLine - 4));
    } else {
      out->push_back(kind == 11 ? '.' : 'x');
      out->append(kFiller);
    }
    out->append("\r\n");
    rem -= kLine;
  }
}

}  // namespace

uint64_t SizeMix::total_weight() const {
  uint64_t w = 0;
  for (const Entry& e : entries) w += e.weight;
  return w;
}

double SizeMix::MeanBytes() const {
  const uint64_t w = total_weight();
  if (w == 0) return 0;
  double sum = 0;
  for (const Entry& e : entries)
    sum += static_cast<double>(e.weight) * static_cast<double>(e.bytes);
  return sum / static_cast<double>(w);
}

uint64_t SizeMix::Draw(std::mt19937_64& rng) const {
  if (entries.size() == 1) return entries[0].bytes;
  uint64_t pick = rng() % total_weight();
  for (const Entry& e : entries) {
    if (pick < e.weight) return e.bytes;
    pick -= e.weight;
  }
  return entries.back().bytes;
}

absl::StatusOr<uint64_t> ParseByteCount(std::string_view text) {
  uint64_t scale = 1;
  std::string_view digits = text;
  if (!digits.empty()) {
    const char last = digits.back();
    if (last == 'k' || last == 'K') scale = 1024;
    if (last == 'm' || last == 'M') scale = 1024 * 1024;
    if (scale != 1) digits.remove_suffix(1);
  }
  absl::StatusOr<uint64_t> n = ParseCount(digits, "size");
  if (!n.ok()) return n.status();
  if (*n == 0) return absl::InvalidArgumentError("a size must be above 0");
  if (*n > (uint64_t{1} << 40) / scale) return absl::InvalidArgumentError("size too large");
  return *n * scale;
}

absl::StatusOr<SizeMix> ParseSizeMix(std::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("empty size mix");
  SizeMix mix;
  for (absl::string_view part : absl::StrSplit(absl::string_view(text.data(), text.size()), ',')) {
    const size_t colon = part.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("size mix entry \"", part, "\" is not WEIGHT:BYTES"));
    }
    absl::StatusOr<uint64_t> weight =
        ParseCount(std::string_view(part.data(), colon), "size mix weight");
    if (!weight.ok()) return weight.status();
    if (*weight == 0 || *weight > 1000000) {
      return absl::InvalidArgumentError("size mix weights are 1..1000000");
    }
    absl::StatusOr<uint64_t> bytes =
        ParseByteCount(std::string_view(part.data() + colon + 1, part.size() - colon - 1));
    if (!bytes.ok()) return bytes.status();
    mix.entries.push_back(SizeMix::Entry{*weight, *bytes});
  }
  return mix;
}

MessageFactory::MessageFactory(MessageOptions options, uint64_t seed)
    : options_(std::move(options)), rng_(seed) {
  char buf[64];
  const time_t now = time(nullptr);
  tm parts{};
  gmtime_r(&now, &parts);
  strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &parts);
  date_ = buf;
}

std::string MessageFactory::MessageId(uint64_t seq) const {
  return absl::StrCat("<", options_.run_id, ".", seq, "@", options_.domain, ">");
}

void MessageFactory::Make(uint64_t seq, engine::OutboundMessage* message) {
  message->sender = options_.from;
  message->recipients.resize(static_cast<size_t>(options_.recipients));
  for (engine::OutboundRecipient& r : message->recipients) {
    r.address = absl::StrReplaceAll(options_.to, {{"%d", absl::StrCat(next_recipient_++)}});
    r.notify.clear();
    r.orcpt.clear();
  }
  const uint64_t size = options_.sizes.Draw(rng_);

  std::string& body = message->body;
  body.clear();
  absl::StrAppend(&body, "Message-ID: ", MessageId(seq), "\r\nDate: ", date_, "\r\nFrom: <",
                  options_.from, ">\r\nTo: <",
                  message->recipients.empty() ? "" : message->recipients[0].address,
                  ">\r\nSubject: postern-loadgen message ", seq);
  // A filler of one octet cannot end in CRLF: lengthen the subject instead.
  if (size == body.size() + 5) body.push_back('.');
  body.append("\r\n\r\n");
  if (size > body.size()) {
    const size_t rem = static_cast<size_t>(size) - body.size();
    body.reserve(static_cast<size_t>(size));
    AppendFiller(rem, &body);
  }
}

}  // namespace postern::bench
