// tokenbrokerctl: the command-line client of tokenbrokerd.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "client/ctl/command.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return tokenbroker::ctl::RunCtl(args, std::cout, std::cerr, [](const char* name) { return std::getenv(name); });
}
