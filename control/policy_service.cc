#include "control/policy_service.h"

#include <grpcpp/grpcpp.h>

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "control/config_loader.h"

namespace postern::control {
namespace {

namespace pb = google::protobuf;

grpc::Status ToGrpc(const absl::Status& st) {
  return grpc::Status(static_cast<grpc::StatusCode>(st.code()), std::string(st.message()));
}

grpc::Status Error(grpc::StatusCode code, std::string message) {
  return grpc::Status(code, std::move(message));
}

// "added a.example, b.example; modified c.example"
std::string DescribeChanges(const admin::v1::PolicyChangeResponse& response) {
  std::map<v1::ChangeKind, std::vector<std::string>> by_kind;
  for (const auto& c : response.changes()) by_kind[c.kind()].push_back(c.domain());
  std::vector<std::string> parts;
  for (const auto& [kind, domains] : by_kind) {
    const char* verb = kind == v1::CHANGE_KIND_ADDED      ? "added"
                       : kind == v1::CHANGE_KIND_MODIFIED ? "modified"
                                                          : "removed";
    parts.push_back(absl::StrCat(verb, " partner ", absl::StrJoin(domains, ", ")));
  }
  return absl::StrJoin(parts, "; ");
}

}  // namespace

PolicyService::PolicyService(PolicyStore* store, config::v1::Config file, std::string config_file)
    : store_(store), config_file_(std::move(config_file)), file_(std::move(file)) {}

absl::StatusOr<config::v1::Config> PolicyService::Effective() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<StorePartners> current = ReadStorePartners(*store_);
  if (!current.ok()) return current.status();
  std::vector<config::v1::Partner> partners;
  for (const auto& p : current->partners) partners.push_back(p.partner);
  std::vector<std::string> shadowed;
  absl::StatusOr<config::v1::Config> merged = MergeConfig(file_, partners, &shadowed);
  for (const auto& d : shadowed) {
    log::LogEvent("policy_partner_shadowed", log::Level::kWarn)
        .Add("domain", d)
        .Add("reason", "the config file defines it; the file's entry is in force")
        .Emit();
  }
  if (!merged.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config file + policy store (revision ",
                                                   current->revision,
                                                   "): ", merged.status().message()));
  }
  return merged;
}

absl::Status PolicyService::Reload(absl::StatusOr<config::v1::Config> file) {
  absl::MutexLock lock(&mu_);
  absl::Status st = file.status();
  absl::StatusOr<StorePartners> current;
  if (st.ok()) {
    current = ReadStorePartners(*store_);
    st = current.status();
  }
  absl::StatusOr<config::v1::Config> merged;
  std::vector<std::string> shadowed;
  if (st.ok()) {
    std::vector<config::v1::Partner> partners;
    for (const auto& p : current->partners) partners.push_back(p.partner);
    merged = MergeConfig(*file, partners, &shadowed);
    if (!merged.ok()) {
      st = absl::InvalidArgumentError(
          absl::StrCat("config file + policy store: ", merged.status().message()));
    }
  }
  if (!st.ok()) {
    log::LogEvent("reload_refused", log::Level::kError)
        .Add("error", std::string(st.message()))
        .Emit();
    return st;
  }
  for (const auto& d : shadowed) {
    log::LogEvent("policy_partner_shadowed", log::Level::kWarn).Add("domain", d).Emit();
  }
  file_ = std::move(*file);
  ++generation_;
  if (sink_ != nullptr) sink_->SubmitConfig(std::move(*merged), generation_);
  return absl::OkStatus();
}

AuditInfo PolicyService::Audit(grpc::ServerContext* context, std::string summary) {
  AuditInfo audit;
  // The admin socket is owner-only (0600): whoever connects is the node's
  // user. Per-user identity comes with the mTLS listener.
  audit.actor = "local";
  audit.source = context != nullptr ? context->peer() : "";
  audit.summary = std::move(summary);
  return audit;
}

absl::StatusOr<uint64_t> PolicyService::CommitLocked(const StorePartners& current,
                                                     const Target& target, bool dry_run,
                                                     int64_t expect_revision,
                                                     const AuditInfo& audit_in,
                                                     admin::v1::PolicyChangeResponse* response) {
  if (expect_revision > 0 && expect_revision != current.revision) {
    return absl::AbortedError(absl::StrCat("the policy store is at revision ", current.revision,
                                           ", expected ", expect_revision));
  }
  std::vector<config::v1::Partner> list;
  for (const auto& [key, p] : target) list.push_back(p);
  absl::StatusOr<config::v1::Config> merged = MergeConfig(file_, list);
  if (!merged.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("effective configuration: ", merged.status().message()));
  }

  std::map<std::string, const config::v1::Partner*> before;
  for (const auto& p : current.partners) before[PartnerKey(p.partner.domain())] = &p.partner;
  TxnRequest txn;
  for (const auto& [key, p] : target) {
    auto it = before.find(key);
    if (it != before.end() && it->second->SerializeAsString() == p.SerializeAsString()) continue;
    auto* c = response->add_changes();
    c->set_domain(p.domain());
    c->set_kind(it == before.end() ? v1::CHANGE_KIND_ADDED : v1::CHANGE_KIND_MODIFIED);
    txn.ops.push_back(TxnOp::Put(key, p.SerializeAsString()));
  }
  for (const auto& [key, p] : before) {
    if (target.count(key) != 0) continue;
    auto* c = response->add_changes();
    c->set_domain(p->domain());
    c->set_kind(v1::CHANGE_KIND_REMOVED);
    txn.ops.push_back(TxnOp::Delete(key));
  }
  response->set_revision(current.revision);
  response->set_dry_run(dry_run);
  if (dry_run || txn.ops.empty()) return 0;

  txn.compares.push_back(Compare::StoreRevisionIs(current.revision));
  txn.audit = audit_in;
  if (txn.audit.summary.empty()) txn.audit.summary = DescribeChanges(*response);
  absl::StatusOr<TxnResult> result = store_->Txn(txn);
  if (!result.ok()) return result.status();
  if (!result->succeeded) return result->ToStatus();
  response->set_revision(result->revision);
  response->set_committed(true);
  log::LogEvent("policy_committed")
      .Add("revision", result->revision)
      .Add("actor", txn.audit.actor)
      .Add("summary", txn.audit.summary)
      .Emit();
  ++generation_;
  if (sink_ != nullptr) sink_->SubmitConfig(std::move(*merged), generation_);
  return generation_;
}

void PolicyService::WaitRollout(uint64_t generation, admin::v1::PolicyChangeResponse* response) {
  if (generation == 0 || sink_ == nullptr) return;
  *response->mutable_rollout() = sink_->WaitForConfig(generation, kRolloutWait);
}

grpc::Status PolicyService::ApplyPolicy(grpc::ServerContext* context,
                                        const admin::v1::ApplyPolicyRequest* request,
                                        admin::v1::PolicyChangeResponse* response) {
  config::v1::Config written;
  absl::StatusOr<config::v1::Config> parsed = ParseConfigYaml(request->yaml(), "policy", &written);
  if (!parsed.ok()) return ToGrpc(parsed.status());
  std::vector<const pb::FieldDescriptor*> fields;
  written.GetReflection()->ListFields(written, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    if (f->number() != config::v1::Config::kPartnersFieldNumber) {
      return Error(grpc::StatusCode::INVALID_ARGUMENT,
                   absl::StrCat("policy: section ", f->name(),
                                ": not supported through the API yet; supported sections: "
                                "partners (the rest stays in the config file)"));
    }
  }
  if (written.partners_size() == 0) {
    return Error(grpc::StatusCode::INVALID_ARGUMENT, "policy: no partners given");
  }
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& p : written.partners()) {
      if (FileDefinesPartner(file_, p.domain())) {
        return Error(grpc::StatusCode::FAILED_PRECONDITION,
                     absl::StrCat("partner \"", p.domain(), "\" is defined in the config file ",
                                  config_file_, "; change it there"));
      }
    }
    absl::StatusOr<StorePartners> current = ReadStorePartners(*store_);
    if (!current.ok()) return ToGrpc(current.status());
    Target target;
    for (const auto& p : current->partners) target[PartnerKey(p.partner.domain())] = p.partner;
    for (const auto& p : written.partners()) target[PartnerKey(p.domain())] = p;
    absl::StatusOr<uint64_t> gen =
        CommitLocked(*current, target, request->dry_run(), request->expect_revision(),
                     Audit(context, request->summary()), response);
    if (!gen.ok()) return ToGrpc(gen.status());
    generation = *gen;
  }
  WaitRollout(generation, response);
  return grpc::Status::OK;
}

grpc::Status PolicyService::DeletePartner(grpc::ServerContext* context,
                                          const admin::v1::DeletePartnerRequest* request,
                                          admin::v1::PolicyChangeResponse* response) {
  if (request->domain().empty()) {
    return Error(grpc::StatusCode::INVALID_ARGUMENT, "no domain given");
  }
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    if (FileDefinesPartner(file_, request->domain())) {
      return Error(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat("partner \"", request->domain(), "\" is defined in the config file ",
                       config_file_, "; change it there"));
    }
    absl::StatusOr<StorePartners> current = ReadStorePartners(*store_);
    if (!current.ok()) return ToGrpc(current.status());
    Target target;
    for (const auto& p : current->partners) target[PartnerKey(p.partner.domain())] = p.partner;
    if (target.erase(PartnerKey(request->domain())) == 0) {
      return Error(grpc::StatusCode::NOT_FOUND,
                   absl::StrCat("no partner \"", request->domain(), "\" in the policy store"));
    }
    absl::StatusOr<uint64_t> gen =
        CommitLocked(*current, target, false, request->expect_revision(),
                     Audit(context, absl::StrCat("delete partner ", request->domain())), response);
    if (!gen.ok()) return ToGrpc(gen.status());
    generation = *gen;
  }
  WaitRollout(generation, response);
  return grpc::Status::OK;
}

grpc::Status PolicyService::RollbackPolicy(grpc::ServerContext* context,
                                           const admin::v1::RollbackPolicyRequest* request,
                                           admin::v1::PolicyChangeResponse* response) {
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    absl::StatusOr<StorePartners> current = ReadStorePartners(*store_);
    if (!current.ok()) return ToGrpc(current.status());
    if (request->revision() < 0 || request->revision() > current->revision) {
      return Error(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("revision ", request->revision(),
                       " is not a past revision (the store is at ", current->revision, ")"));
    }
    Target target;
    if (request->revision() > 0) {
      absl::StatusOr<StorePartners> old = ReadStorePartners(*store_, request->revision());
      if (!old.ok()) return ToGrpc(old.status());
      for (const auto& p : old->partners) target[PartnerKey(p.partner.domain())] = p.partner;
    }
    // Partners the file defines now are the file's: left as they are.
    for (auto it = target.begin(); it != target.end();) {
      it = FileDefinesPartner(file_, it->second.domain()) ? target.erase(it) : std::next(it);
    }
    for (const auto& p : current->partners) {
      if (FileDefinesPartner(file_, p.partner.domain())) {
        target[PartnerKey(p.partner.domain())] = p.partner;
      }
    }
    absl::StatusOr<uint64_t> gen = CommitLocked(
        *current, target, false, request->expect_revision(),
        Audit(context, absl::StrCat("rollback to revision ", request->revision())), response);
    if (!gen.ok()) return ToGrpc(gen.status());
    generation = *gen;
  }
  WaitRollout(generation, response);
  return grpc::Status::OK;
}

grpc::Status PolicyService::GetPolicy(grpc::ServerContext*, const admin::v1::GetPolicyRequest*,
                                      admin::v1::GetPolicyResponse* response) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<StorePartners> current = ReadStorePartners(*store_);
  if (!current.ok()) return ToGrpc(current.status());
  response->set_revision(current->revision);
  response->set_config_file(config_file_);
  for (const auto& p : file_.partners()) {
    auto* out = response->add_partners();
    *out->mutable_partner() = p;
    out->set_source(admin::v1::POLICY_SOURCE_FILE);
  }
  for (const auto& p : current->partners) {
    auto* out = response->add_partners();
    *out->mutable_partner() = p.partner;
    out->set_source(admin::v1::POLICY_SOURCE_STORE);
    out->set_mod_revision(p.mod_revision);
    out->set_shadowed(FileDefinesPartner(file_, p.partner.domain()));
  }
  return grpc::Status::OK;
}

grpc::Status PolicyService::PolicyHistory(grpc::ServerContext*,
                                          const admin::v1::PolicyHistoryRequest* request,
                                          admin::v1::PolicyHistoryResponse* response) {
  const size_t limit = request->limit() == 0 ? 20 : std::min<size_t>(request->limit(), 1000);
  absl::StatusOr<std::vector<v1::AuditRecord>> records = store_->History(limit);
  if (!records.ok()) return ToGrpc(records.status());
  for (auto& r : *records) *response->add_records() = std::move(r);
  return grpc::Status::OK;
}

}  // namespace postern::control
