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

namespace {

// "RuntimeError: ..." or "torch.jit.Error: ..." at the start of a line.
bool names_exception(const std::string& line) {
  const size_t colon = line.find(": ");
  if (colon == std::string::npos || colon == 0) return false;
  const std::string head = line.substr(0, colon);
  if (head.find_first_of(" \t/()<>") != std::string::npos) return false;
  const bool error = head.size() >= 5 && head.compare(head.size() - 5, 5, "Error") == 0;
  return error || head.find("Exception") != std::string::npos;
}

}  // namespace

std::string interpreter_error(const std::string& message) {
  std::vector<std::string> lines;
  std::istringstream in(message);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  // TorchScript failures end with the error itself ("RuntimeError: ...")
  // after one or two tracebacks (serialized code, and for traced models the
  // Python frames of the original code): keep from the last such line on.
  for (size_t i = lines.size(); i-- > 0;) {
    if (!names_exception(lines[i])) continue;
    std::string tail;
    for (size_t j = i; j < lines.size(); ++j) tail += (tail.empty() ? "" : "\n") + lines[j];
    return shorten_message(tail);
  }
  if (message.find("The following operation failed in the TorchScript interpreter") == std::string::npos) {
    return shorten_message(message);
  }
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
