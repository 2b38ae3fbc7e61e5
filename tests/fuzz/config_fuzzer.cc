// libFuzzer target for the configuration file: YAML into the Config proto,
// with every check the loader makes. Built with clang by scripts/fuzz.
#include <cstddef>
#include <cstdint>
#include <string>

#include "service/config/config_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  (void)tokenbroker::ParseConfig(input, "fuzz.yaml");
  return 0;
}
