#include "errors.h"

#include <sstream>
#include <vector>

namespace tcka {

std::string shorten_message(const std::string& message, size_t max_lines) {
  std::istringstream in(message);
  std::ostringstream out;
  std::string line;
  size_t kept = 0;
  bool more = false;
  while (std::getline(in, line)) {
    // libtorch sometimes appends C++ frames even to what_without_backtrace().
    if (line.rfind("Exception raised from", 0) == 0 || line.rfind("frame #", 0) == 0) break;
    if (kept == max_lines) {
      more = true;
      break;
    }
    if (kept > 0) out << '\n';
    out << line;
    ++kept;
  }
  if (more) out << "\n...";
  std::string text = out.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string interpreter_error(const std::string& message) {
  if (message.find("The following operation failed in the TorchScript interpreter") == std::string::npos) {
    return shorten_message(message);
  }
  std::vector<std::string> lines;
  std::istringstream in(message);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  // The tracebacks are indented; the error itself follows the last indented line.
  size_t start = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!lines[i].empty() && (lines[i][0] == ' ' || lines[i][0] == '\t')) start = i + 1;
  }
  std::string tail;
  for (size_t i = start; i < lines.size(); ++i) tail += (tail.empty() ? "" : "\n") + lines[i];
  return tail.empty() ? shorten_message(message) : shorten_message(tail);
}

}  // namespace tcka
