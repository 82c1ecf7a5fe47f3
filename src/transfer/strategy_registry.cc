// The one list of strategies. Adding one: a file under transfer/strategies/ and a line here.
#include "transfer/strategy.h"

namespace ferry::transfer {

const Strategy& eager_all();
const Strategy& pre_copy();
const Strategy& eager_dirty();
const Strategy& copy_on_reference();
const Strategy& flushing();

const std::vector<const Strategy*>& all_strategies() {
  static const std::vector<const Strategy*> all = {&eager_all(), &pre_copy(), &eager_dirty(),
                                                   &copy_on_reference(), &flushing()};
  return all;
}

const Strategy& default_strategy() {
  return eager_all();
}

const Strategy* find_strategy(std::string_view name) {
  for (const Strategy* s : all_strategies())
    if (name == s->name()) return s;
  return nullptr;
}

std::vector<std::string> strategy_name_list() {
  std::vector<std::string> out;
  for (const Strategy* s : all_strategies()) out.push_back(s->name());
  return out;
}

std::string strategy_names() {
  std::string out;
  for (const Strategy* s : all_strategies())
    out += (out.empty() ? "" : ", ") + std::string(s->name());
  return out;
}

}  // namespace ferry::transfer
