// The command line of the plain-C++ tools (core_check, fullbatch_check):
// `--name value` pairs and the positional words, in order, and comma lists.
#pragma once

#include <map>
#include <sstream>
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

// "a,b,,c" -> {"a", "b", "c"}: the items of a `sep`-separated list, empty ones dropped.
inline std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

}  // namespace tcka::tools
