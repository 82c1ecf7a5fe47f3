// The Starter's policies and their parameters, as `ferry policy set NAME on|off [KEY=VALUE...]`
// sets them. The settings are the cluster's: the node asked applies them and tells every other
// node; load reports carry them too, so a node that was down takes the newest when it is back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ferry.pb.h"

namespace ferry::policy {

inline constexpr const char* kLoadSharing = "load-sharing";
inline constexpr const char* kAffinity = "affinity";
inline constexpr const char* kAvailability = "availability";
inline constexpr const char* kCapabilities = "capabilities";

struct ParamSpec {
  const char* key;
  double value;  // the default
  const char* meaning;
};
// The policies and their parameters with defaults.
const std::vector<std::pair<std::string, std::vector<ParamSpec>>>& known_policies();

// `current` with one policy switched and its parameters set; throws naming an unknown policy,
// key or a value that is not a number in range.
rpc::PolicySettings apply(const rpc::PolicySettings& current, const rpc::PolicySetRequest& req,
                          uint64_t now_unix_ms);
bool is_on(const rpc::PolicySettings& s, const std::string& name);
// A parameter's value (its default when not set).
double param(const rpc::PolicySettings& s, const std::string& name, const std::string& key);
// Every policy with its state and every parameter (set or default), for `ferry policy show`.
rpc::PolicySettings with_defaults(const rpc::PolicySettings& s);

}  // namespace ferry::policy
