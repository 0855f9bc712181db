// BdatReader: the message content of one CHUNKING transaction (RFC 3030),
// accumulated across its BDAT chunks. Chunk octets are raw: no dot-stuffing,
// no end-of-data sequence, no line-length limit. What the reader does:
//
//  - the size limit across chunks: Fits() is asked at each BDAT command with
//    the declared chunk size, before any of its octets arrive, so a chunk
//    that would take the message over max_message_size is never stored (the
//    session still consumes and discards its octets). The declared size is
//    untrusted and never allocated up front: content grows only by octets
//    actually fed.
//  - bare CR and bare LF, as for DATA (the smuggling guard, 550 5.6.11): a CR
//    not followed by LF, or an LF not preceded by CR, anywhere in the content.
//    A CRLF may be split across two chunks ("...\r" then "\n..."), so a CR at
//    the end of a chunk is judged by the next chunk's first octet, and only
//    Finish() (BDAT LAST) can call a final CR bare.
//
// After a bare CR or LF nothing more is appended, and what was appended must
// be discarded (the session frees it).
//
// Header-only: it is a few lines, and the standalone fuzz build
// (tools/fuzz.sh) lists the protocol's .cc files by hand.
//
// Not thread-safe; one reader per transaction, on the session's thread.
#ifndef POSTERN_ENGINE_SMTP_BDAT_READER_H_
#define POSTERN_ENGINE_SMTP_BDAT_READER_H_

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace postern::engine {

class BdatReader {
 public:
  explicit BdatReader(uint64_t max_message_size) : max_message_size_(max_message_size) {}

  // True if a chunk of `chunk_size` octets keeps the message within the limit.
  bool Fits(uint64_t chunk_size) const { return chunk_size <= max_message_size_ - size_; }

  // Octets of a chunk that Fits(): scans them and appends them to *content
  // (unless a bare CR or LF was seen). Any split of a chunk gives the same
  // result. Feeding more than Fits() allowed is a caller bug (debug assert).
  void Feed(std::string_view octets, std::string* content) {
    assert(Fits(octets.size()));
    size_ += octets.size();
    for (size_t i = 0; i < octets.size() && !bare_newline_;) {
      const char c = octets[i];
      if (c == '\n') {
        if (!after_cr_) bare_newline_ = true;
        after_cr_ = false;
        ++i;
      } else if (after_cr_) {
        bare_newline_ = true;  // the CR before this octet was bare
      } else if (c == '\r') {
        after_cr_ = true;
        ++i;
      } else {
        i = NextLineBreak(octets, i);
      }
    }
    if (!bare_newline_) content->append(octets);
  }

  // At BDAT LAST: true if the message is clean. A message whose last line has
  // no CRLF gets one, so stored content always ends in CRLF (or is empty),
  // as it does after DATA; the next hop needs that to end DATA, and RFC 6376
  // canonicalisation treats the body the same either way.
  bool Finish(std::string* content) {
    if (after_cr_) bare_newline_ = true;
    if (bare_newline_) return false;
    if (!content->empty() && content->back() != '\n') content->append("\r\n");
    return true;
  }

  bool bare_newline() const { return bare_newline_; }

  // The index of the first CR or LF at or after `from`, or octets.size().
  // Two memchr scans instead of string_view::find_first_of("\r\n"), which
  // libstdc++ runs as one memchr over the two-octet set per content octet:
  // that made scanning a 100 KB message cost about a millisecond. The LF
  // scan stops at the CR, so each octet is read at most twice.
  static size_t NextLineBreak(std::string_view octets, size_t from) {
    const char* begin = octets.data();
    const char* end = begin + octets.size();
    const char* cr = static_cast<const char*>(std::memchr(begin + from, '\r', end - begin - from));
    const char* stop = cr != nullptr ? cr : end;
    const char* lf = static_cast<const char*>(std::memchr(begin + from, '\n', stop - begin - from));
    return static_cast<size_t>((lf != nullptr ? lf : stop) - begin);
  }
  // Octets fed so far, over all chunks.
  uint64_t size() const { return size_; }

 private:
  const uint64_t max_message_size_;
  uint64_t size_ = 0;
  bool after_cr_ = false;  // the last octet fed was a CR
  bool bare_newline_ = false;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_SMTP_BDAT_READER_H_
