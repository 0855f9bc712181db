// MethodOp<T>: an engine::IoOp that hands its completions to one member
// function of its owner, the way the bench tools' loop objects and
// connections route ring completions back to themselves.
//
// Lifetime: a member of its owner, which must stay alive while the op is in
// flight (engine/io_ring.h). Loop thread only.
#ifndef POSTERN_BENCH_METHOD_OP_H_
#define POSTERN_BENCH_METHOD_OP_H_

#include <cstdint>

#include "engine/io_ring.h"

namespace postern::bench {

template <typename T>
class MethodOp : public engine::IoOp {
 public:
  using Handler = void (T::*)(int res, uint32_t flags);
  MethodOp(T* owner, Handler handler) : owner_(owner), handler_(handler) {}
  void OnComplete(int res, uint32_t flags) override { (owner_->*handler_)(res, flags); }

 private:
  T* owner_;
  Handler handler_;
};

}  // namespace postern::bench

#endif  // POSTERN_BENCH_METHOD_OP_H_
