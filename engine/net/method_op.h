// MethodOp<T>: an IoOp that hands its completions to one member function of
// its owner, the way loop objects route ring completions back to themselves.
//
// Lifetime: a member of its owner, which must stay alive while the op is in
// flight (engine/net/io_ring.h). Loop thread only.
#ifndef POSTERN_ENGINE_NET_METHOD_OP_H_
#define POSTERN_ENGINE_NET_METHOD_OP_H_

#include <cstdint>

#include "engine/net/io_ring.h"

namespace postern::engine {

template <typename T>
class MethodOp : public IoOp {
 public:
  using Handler = void (T::*)(int res, uint32_t flags);
  MethodOp(T* owner, Handler handler) : owner_(owner), handler_(handler) {}
  void OnComplete(int res, uint32_t flags) override { (owner_->*handler_)(res, flags); }

 private:
  T* owner_;
  Handler handler_;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_NET_METHOD_OP_H_
