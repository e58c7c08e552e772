// The command line of the plain-C++ tools (core_check, fullbatch_check):
// `--name value` pairs and the positional words, in order.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace tcka::tools {

struct ToolArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::string> opt;  // "--threads 2" -> {"threads", "2"}
};

inline ToolArgs parse_tool_args(int argc, char** argv) {
  ToolArgs out;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0 && i + 1 < argc) {
      out.opt[arg.substr(2)] = argv[++i];
    } else {
      out.positional.push_back(arg);
    }
  }
  return out;
}

}  // namespace tcka::tools
