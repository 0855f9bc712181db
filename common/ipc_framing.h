// Length-prefixed protobuf frames over a stream socket (the posternd <->
// postern-worker socketpair). A frame is a 4-byte big-endian length followed
// by that many bytes of one serialized message. Frames are bounded so a
// corrupt peer cannot make the other side allocate without limit.
#ifndef POSTERN_COMMON_IPC_FRAMING_H_
#define POSTERN_COMMON_IPC_FRAMING_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace postern::ipc {

inline constexpr size_t kMaxFrameBytes = 64 * 1024 * 1024;

// Appends one frame holding `payload` to *out.
void AppendFrame(std::string_view payload, std::string* out);

// Accumulates bytes and yields complete frame payloads in order.
class FrameReader {
 public:
  void Append(std::string_view bytes) { buffer_.append(bytes); }
  // The next complete payload, nullopt when more bytes are needed, or an
  // error for a frame over kMaxFrameBytes (the stream cannot be trusted after).
  absl::StatusOr<std::optional<std::string>> Next();

 private:
  std::string buffer_;
  size_t start_ = 0;
};

// Blocking helpers for the supervisor side and for worker start-up.
absl::Status WriteFrame(int fd, std::string_view payload);
// Reads exactly one frame; NotFound at a clean end of stream.
absl::StatusOr<std::string> ReadFrame(int fd);

}  // namespace postern::ipc

#endif  // POSTERN_COMMON_IPC_FRAMING_H_
