#include "service/store/sql_backend.h"

namespace tokenbroker {

int64_t SqlValue::AsInt() const {
  if (const int64_t* i = std::get_if<int64_t>(&v)) return *i;
  return 0;
}

const std::string& SqlValue::AsString() const {
  static const std::string* empty = new std::string();
  if (const std::string* s = std::get_if<std::string>(&v)) return *s;
  if (const Blob* b = std::get_if<Blob>(&v)) return b->bytes;
  return *empty;
}

}  // namespace tokenbroker
