// PolicyService: the Policy gRPC service (proto/admin.proto) on posternd's
// admin socket: partners managed through the API, kept in the node's policy
// store (<data_dir>/control) and merged with the config file into the
// effective configuration (control/effective_config.h).
//
// Every change is validated against the whole effective configuration,
// committed as one store transaction with its audit record (or not at all),
// then handed to the workers (ConfigSink) as a new configuration version;
// the call answers once they applied it or after kRolloutWait.
//
// Threading: the RPCs run on gRPC threads; Reload() on posternd's main
// thread (SIGHUP). One mutex serializes "read the store, merge, commit,
// submit", so the configurations reach the ConfigSink in generation order
// and a reload never undoes a change committed meanwhile. The wait for the
// workers happens outside it.
#ifndef POSTERN_CONTROL_POLICY_SERVICE_H_
#define POSTERN_CONTROL_POLICY_SERVICE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "control/admin_service.h"
#include "control/effective_config.h"
#include "control/policy_store/policy_store.h"
#include "proto/admin.grpc.pb.h"

namespace postern::control {

class PolicyService final : public admin::v1::Policy::Service {
 public:
  static constexpr absl::Duration kRolloutWait = absl::Seconds(5);

  // `store` and `sink` are borrowed and must outlive the service (`sink`
  // may be set later, before the first RPC, with set_sink). `file` is the
  // config file's configuration (defaults applied); `config_file` names it
  // in errors.
  PolicyService(PolicyStore* store, config::v1::Config file, std::string config_file);

  void set_sink(ConfigSink* sink) { sink_ = sink; }

  // The effective configuration now: the file + the store's partners.
  absl::StatusOr<config::v1::Config> Effective() ABSL_LOCKS_EXCLUDED(mu_);

  // SIGHUP: `file` is the re-read config file. Merges it with the store and
  // submits the result; an invalid result is refused (logged) and nothing
  // changes.
  absl::Status Reload(absl::StatusOr<config::v1::Config> file) ABSL_LOCKS_EXCLUDED(mu_);

  grpc::Status ApplyPolicy(grpc::ServerContext* context,
                           const admin::v1::ApplyPolicyRequest* request,
                           admin::v1::PolicyChangeResponse* response) override;
  grpc::Status GetPolicy(grpc::ServerContext* context, const admin::v1::GetPolicyRequest* request,
                         admin::v1::GetPolicyResponse* response) override;
  grpc::Status PolicyHistory(grpc::ServerContext* context,
                             const admin::v1::PolicyHistoryRequest* request,
                             admin::v1::PolicyHistoryResponse* response) override;
  grpc::Status DeletePartner(grpc::ServerContext* context,
                             const admin::v1::DeletePartnerRequest* request,
                             admin::v1::PolicyChangeResponse* response) override;
  grpc::Status RollbackPolicy(grpc::ServerContext* context,
                              const admin::v1::RollbackPolicyRequest* request,
                              admin::v1::PolicyChangeResponse* response) override;

 private:
  // The store partners a change wants, by key; a change computes it from
  // the current ones.
  using Target = std::map<std::string, config::v1::Partner>;

  // Validates `target` against the file, diffs it with `current`, and
  // (unless dry_run) commits the difference as one transaction conditioned
  // on the store still being at current.revision (and at expect_revision
  // when > 0), then submits the new effective configuration. Fills
  // `response` except the rollout; answers the generation submitted (0:
  // none).
  absl::StatusOr<uint64_t> CommitLocked(const StorePartners& current, const Target& target,
                                        bool dry_run, int64_t expect_revision,
                                        const AuditInfo& audit,
                                        admin::v1::PolicyChangeResponse* response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits for the workers (outside mu_) and fills response->rollout.
  void WaitRollout(uint64_t generation, admin::v1::PolicyChangeResponse* response);
  static AuditInfo Audit(grpc::ServerContext* context, std::string summary);

  PolicyStore* const store_;
  ConfigSink* sink_ = nullptr;
  const std::string config_file_;
  absl::Mutex mu_;
  config::v1::Config file_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace postern::control

#endif  // POSTERN_CONTROL_POLICY_SERVICE_H_
