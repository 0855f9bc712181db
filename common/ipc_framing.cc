#include "common/ipc_framing.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace postern::ipc {

void AppendFrame(std::string_view payload, std::string* out) {
  uint32_t n = static_cast<uint32_t>(payload.size());
  char len[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                 static_cast<char>(n)};
  out->append(len, 4);
  out->append(payload);
}

absl::StatusOr<std::optional<std::string>> FrameReader::Next() {
  if (buffer_.size() - start_ < 4) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + start_);
  size_t n = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3];
  if (n > kMaxFrameBytes) {
    return absl::DataLossError(absl::StrCat("IPC frame of ", n, " bytes exceeds the limit"));
  }
  if (buffer_.size() - start_ - 4 < n) return std::nullopt;
  std::string payload = buffer_.substr(start_ + 4, n);
  start_ += 4 + n;
  if (start_ == buffer_.size()) {
    buffer_.clear();
    start_ = 0;
  } else if (start_ > 4096 && start_ * 2 > buffer_.size()) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  return payload;
}

absl::Status WriteFrame(int fd, std::string_view payload) {
  std::string frame;
  AppendFrame(payload, &frame);
  size_t off = 0;
  while (off < frame.size()) {
    ssize_t w = send(fd, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "IPC write");
    }
    off += static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

static absl::Status ReadExactly(int fd, char* buf, size_t n, bool* eof_at_start) {
  size_t off = 0;
  while (off < n) {
    ssize_t r = read(fd, buf + off, n - off);
    if (r < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "IPC read");
    }
    if (r == 0) {
      if (off == 0 && eof_at_start != nullptr) *eof_at_start = true;
      return absl::NotFoundError("IPC peer closed the channel");
    }
    off += static_cast<size_t>(r);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFrame(int fd) {
  char len[4];
  bool eof = false;
  absl::Status st = ReadExactly(fd, len, 4, &eof);
  if (!st.ok()) return st;
  const auto* p = reinterpret_cast<const unsigned char*>(len);
  size_t n = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | p[3];
  if (n > kMaxFrameBytes) return absl::DataLossError("IPC frame exceeds the limit");
  std::string payload(n, '\0');
  st = ReadExactly(fd, payload.data(), n, nullptr);
  if (!st.ok()) return st;
  return payload;
}

}  // namespace postern::ipc
