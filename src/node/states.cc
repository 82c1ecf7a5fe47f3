#include "node/states.h"

#include <cctype>

namespace ferry::node {

std::string printable_enum(const google::protobuf::EnumDescriptor* type, int value) {
  const google::protobuf::EnumValueDescriptor* v = type->FindValueByNumber(value);
  if (!v) return "unknown";
  const std::string& full = v->name();
  std::string out;
  for (char c : full.substr(full.find('_') + 1))
    out += c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace ferry::node
