#include "errors.h"

#include <sstream>

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

}  // namespace tcka
