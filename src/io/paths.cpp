#include "io/paths.h"

#include <system_error>
#include <vector>

#include "core/error.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;

bool is_separator(char c) { return c == '/' || c == '\\'; }

// Components of a relative name, '/' and '\' both separating; empty and "." parts dropped.
std::vector<std::string> split_name(const std::string& name) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : name) {
    if (is_separator(c)) {
      if (!cur.empty() && cur != ".") parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty() && cur != ".") parts.push_back(cur);
  return parts;
}

enum class NameProblem { kNone, kEmpty, kNul, kAbsolute, kParent };

NameProblem check_name(const std::string& name) {
  if (name.find('\0') != std::string::npos) return NameProblem::kNul;
  if (name.empty()) return NameProblem::kEmpty;
  if (is_absolute_name(name)) return NameProblem::kAbsolute;
  const std::vector<std::string> parts = split_name(name);
  if (parts.empty()) return NameProblem::kEmpty;
  for (const std::string& p : parts) {
    if (p == "..") return NameProblem::kParent;
  }
  return NameProblem::kNone;
}

// Without a trailing empty component, so that "/a/b/" and "/a/b" compare equal.
fs::path without_trailing_slash(fs::path p) {
  if (!p.has_filename() && p.has_relative_path()) p = p.parent_path();
  return p;
}

bool is_inside(const fs::path& root, const fs::path& candidate) {
  auto r = root.begin();
  auto c = candidate.begin();
  for (; r != root.end(); ++r, ++c) {
    if (c == candidate.end() || *r != *c) return false;
  }
  return true;
}

}  // namespace

bool is_absolute_name(const std::string& name) {
  if (!name.empty() && is_separator(name[0])) return true;
  // "C:x" is drive-relative on Windows, where such a workflow was made: not ours to resolve.
  return name.size() >= 2 && name[1] == ':' &&
         ((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z'));
}

bool is_safe_relative_name(const std::string& name) { return check_name(name) == NameProblem::kNone; }

fs::path confine(const fs::path& root, const std::string& name, const std::string& what) {
  const std::string quoted = what + " '" + name + "'";
  switch (check_name(name)) {
    case NameProblem::kNone:
      break;
    case NameProblem::kEmpty:
      throw Error(ErrorKind::kValidation, what + " is empty");
    case NameProblem::kNul:
      throw Error(ErrorKind::kValidation, what + " contains a NUL byte");
    case NameProblem::kAbsolute:
      throw Error(ErrorKind::kValidation,
                  quoted + " is an absolute path; give a name inside " + root.string());
    case NameProblem::kParent:
      throw Error(ErrorKind::kValidation, quoted + " leaves its folder " + root.string());
  }

  fs::path joined = root;
  for (const std::string& part : split_name(name)) joined /= part;

  std::error_code ec;
  const fs::path real_root = without_trailing_slash(fs::weakly_canonical(root, ec));
  if (ec) throw Error(ErrorKind::kIo, "cannot resolve folder " + root.string() + ": " + ec.message());
  const fs::path real = without_trailing_slash(fs::weakly_canonical(joined, ec));
  if (ec)
    throw Error(ErrorKind::kIo, "cannot resolve " + quoted + " under " + root.string() + ": " + ec.message());
  if (!is_inside(real_root, real)) {
    throw Error(ErrorKind::kValidation,
                quoted + " leaves its folder " + root.string() + " (it resolves to " + real.string() + ")");
  }
  return real;
}

}  // namespace sdflow
