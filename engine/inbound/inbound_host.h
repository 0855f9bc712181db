// InboundHost: what an inbound connection asks of the server that owns it.
// The worker's InboundServer implements it; unit tests implement it with a
// fake, so a connection runs over a socketpair without a worker.
//
// Every answer that takes time (spooling, AUTH verification) comes back
// later through the connection's SpoolDone()/AuthDone(), never from inside
// the call that asked: a connection is never re-entered.
#ifndef POSTERN_ENGINE_INBOUND_INBOUND_HOST_H_
#define POSTERN_ENGINE_INBOUND_INBOUND_HOST_H_

#include <cstdint>
#include <string>

#include "engine/inbound/smtp_server_session.h"

namespace postern::engine {

class InboundConnection;

class InboundHost {
 public:
  virtual ~InboundHost() = default;

  virtual int64_t NowMs() const = 0;
  // Admission once the client's address is known (after a PROXY header):
  // false refuses the connection with 421.
  virtual bool Admit(InboundConnection* conn) = 0;
  virtual std::string NextQueueId() = 0;
  // Makes `msg` durable; answers conn->SpoolDone() later.
  virtual void Spool(InboundConnection* conn, const std::string& queue_id, AcceptedMessage msg) = 0;
  // Verifies credentials; answers conn->AuthDone() later.
  virtual void CheckAuth(InboundConnection* conn, AuthRequest request) = 0;
  // The connection started closing; the host frees it once Finished().
  virtual void ConnectionClosing(InboundConnection* conn) = 0;
};

}  // namespace postern::engine

#endif  // POSTERN_ENGINE_INBOUND_INBOUND_HOST_H_
