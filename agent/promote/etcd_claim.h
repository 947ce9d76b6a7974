// The promotion lock in etcd: when the topology names an etcd cluster, a
// switchover or failover claims the new (epoch, primary) there by
// compare-and-swap before it changes anything, so two operators can never
// promote two sites. etcd does the consensus; geosync only reads and CASes
// one key, /geosync/<cluster_id>/promotion, through etcd's v3 JSON gateway
// (POST /v3/kv/range and /v3/kv/txn).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace geosync::promote {

struct EtcdClaim {
  uint64_t epoch = 0;
  std::string primary;  // the site promoted at that epoch
  std::string kind;     // "switchover" or "failover"
};

// The claim stored for `cluster_id`, or nullopt; tries each endpoint
// ("http://host:port") until one answers.
Result<std::optional<EtcdClaim>> ReadEtcdClaim(const std::vector<std::string>& endpoints,
                                               const std::string& cluster_id);

// Stores `next` if the key still holds what was read (or is still absent):
// OK when stored, or when the same claim is already there (a resumed run).
// Fenced, naming the stored claim, when another operator claimed an epoch
// >= next.epoch or won the race.
Status ClaimEtcd(const std::vector<std::string>& endpoints, const std::string& cluster_id,
                 const EtcdClaim& next);

}  // namespace geosync::promote
