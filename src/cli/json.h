// JSON for --json output: numbers as numbers, names as in the issue (task, from, to, ...).
#pragma once

#include <nlohmann/json.hpp>

#include "ferry.pb.h"

namespace ferry::cli {

nlohmann::json to_json(const rpc::TaskInfo& t);
nlohmann::json to_json(const rpc::NodeInfo& n);
nlohmann::json to_json(const rpc::MigrateReport& r);
nlohmann::json to_json(const rpc::PolicyEvent& e);
nlohmann::json to_json(const rpc::PolicySettings& s);

}  // namespace ferry::cli
