// The etcd promotion lock; see etcd_claim.h.
#include "agent/promote/etcd_claim.h"

#include <openssl/evp.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "agent/admin/admin_client.h"

namespace geosync::promote {
namespace {

using json = nlohmann::json;

std::string Base64(const std::string& raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(n);
  return out;
}

Result<std::string> Unbase64(const std::string& text) {
  std::string out(3 * text.size() / 4 + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return Status::Protocol("etcd returned a value that is not base64");
  size_t pad = 0;
  for (size_t i = text.size(); i > 0 && text[i - 1] == '='; --i) pad++;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string Key(const std::string& cluster_id) {
  return fmt::format("/geosync/{}/promotion", cluster_id);
}

// POST `path` with `body` to the first endpoint that answers.
Result<json> Post(const std::vector<std::string>& endpoints, const std::string& path,
                  const json& body) {
  Status last = Status::Config("the topology's \"etcd\" list is empty");
  for (const std::string& ep : endpoints) {
    admin::HttpCall call;
    call.method = "POST";
    call.base_url = ep;
    call.target = path;
    call.body = body.dump();
    call.timeout = std::chrono::seconds(5);
    auto answer = admin::Http(call);
    if (!answer.ok()) {
      last = answer.status().WithContext("etcd " + ep);
      continue;
    }
    if (answer->status != 200) {
      last = Status::Io(
          fmt::format("etcd {}{} answered HTTP {}: {}", ep, path, answer->status, answer->body));
      continue;
    }
    json doc = json::parse(answer->body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      return Status::Protocol(fmt::format("etcd {}{} did not answer JSON", ep, path));
    }
    return doc;
  }
  return last;
}

struct Stored {
  std::optional<EtcdClaim> claim;
  std::string mod_revision;  // "" when absent
};

Result<Stored> ReadStored(const std::vector<std::string>& endpoints,
                          const std::string& cluster_id) {
  GEOSYNC_ASSIGN_OR_RETURN(json doc,
                           Post(endpoints, "/v3/kv/range", {{"key", Base64(Key(cluster_id))}}));
  Stored s;
  if (!doc.contains("kvs") || doc["kvs"].empty()) return s;
  const json& kv = doc["kvs"][0];
  s.mod_revision = kv.value("mod_revision", "");
  GEOSYNC_ASSIGN_OR_RETURN(std::string value, Unbase64(kv.value("value", "")));
  json v = json::parse(value, nullptr, false);
  if (v.is_discarded() || !v.is_object() || !v.contains("epoch")) {
    return Status::Protocol(
        fmt::format("etcd key {} holds \"{}\", not a geosync claim", Key(cluster_id), value));
  }
  EtcdClaim c;
  c.epoch = v["epoch"].get<uint64_t>();
  c.primary = v.value("primary", "");
  c.kind = v.value("kind", "");
  s.claim = c;
  return s;
}

}  // namespace

Result<std::optional<EtcdClaim>> ReadEtcdClaim(const std::vector<std::string>& endpoints,
                                               const std::string& cluster_id) {
  GEOSYNC_ASSIGN_OR_RETURN(Stored s, ReadStored(endpoints, cluster_id));
  return s.claim;
}

Status ClaimEtcd(const std::vector<std::string>& endpoints, const std::string& cluster_id,
                 const EtcdClaim& next) {
  GEOSYNC_ASSIGN_OR_RETURN(Stored s, ReadStored(endpoints, cluster_id));
  if (s.claim) {
    if (s.claim->epoch == next.epoch && s.claim->primary == next.primary) return Status::Ok();
    if (s.claim->epoch >= next.epoch) {
      return Status::Fenced(fmt::format(
          "etcd says epoch {} was already claimed for {} ({}); another promotion won: check "
          "`geosyncctl status` before retrying",
          s.claim->epoch, s.claim->primary, s.claim->kind));
    }
  }
  const std::string key = Base64(Key(cluster_id));
  json compare =
      s.mod_revision.empty()
          ? json{{"key", key}, {"result", "EQUAL"}, {"target", "CREATE"}, {"create_revision", "0"}}
          : json{{"key", key},
                 {"result", "EQUAL"},
                 {"target", "MOD"},
                 {"mod_revision", s.mod_revision}};
  json value = {{"epoch", next.epoch}, {"primary", next.primary}, {"kind", next.kind}};
  json txn = {{"compare", json::array({compare})},
              {"success",
               json::array({{{"request_put", {{"key", key}, {"value", Base64(value.dump())}}}}})}};
  GEOSYNC_ASSIGN_OR_RETURN(json doc, Post(endpoints, "/v3/kv/txn", txn));
  if (!doc.value("succeeded", false)) {
    return Status::Fenced(fmt::format(
        "another operator changed the promotion claim in etcd while this one claimed epoch {} "
        "for {}; nothing was changed here",
        next.epoch, next.primary));
  }
  return Status::Ok();
}

}  // namespace geosync::promote
