#include "io/save_path.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <system_error>
#include <vector>

#include "core/error.h"
#include "io/paths.h"

namespace sdflow {
namespace {

namespace fs = std::filesystem;

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) {
    s.replace(pos, from.size(), to);
  }
}

std::string two_digits(int v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%02d", v);
  return buf;
}

// posixpath.normpath on a relative path, '\' also separating: "." and empty parts dropped,
// "x/.." folded, leading ".." kept. Returns the parts.
std::vector<std::string> normalized_parts(const std::string& path) {
  std::vector<std::string> parts;
  std::string cur;
  auto flush = [&] {
    if (cur == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else {
        parts.push_back(cur);
      }
    } else if (!cur.empty() && cur != ".") {
      parts.push_back(cur);
    }
    cur.clear();
  };
  for (char c : path) {
    if (c == '/' || c == '\\') {
      flush();
    } else {
      cur += c;
    }
  }
  flush();
  return parts;
}

char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool equal_ignoring_ascii_case(const std::string& a, size_t a_len, const std::string& b) {
  if (a_len != b.size() || a.size() < a_len) return false;
  for (size_t i = 0; i < a_len; ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

// The number in "<filename>_<digits>[_...]", 0 when the part after the prefix is not digits
// (ComfyUI's map_filename treats those as 0 too); -1 when the name does not match at all.
// ComfyUI compares with os.path.normcase, which folds case only on Windows; we always fold, so
// that a file saved on a case-insensitive filesystem (macOS, a mounted NTFS) is never overwritten.
int64_t counter_of(const std::string& name, const std::string& filename) {
  const size_t n = filename.size();
  if (name.size() <= n || name[n] != '_' || !equal_ignoring_ascii_case(name, n, filename)) return -1;
  int64_t value = 0;
  size_t i = n + 1;
  for (; i < name.size() && name[i] != '_'; ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    value = value * 10 + (name[i] - '0');
    if (value > INT_MAX) value = INT_MAX;
  }
  return i == n + 1 ? 0 : value;
}

}  // namespace

std::string expand_save_prefix(const std::string& prefix, int image_width, int image_height,
                               const std::tm& now) {
  std::string s = prefix;
  if (s.find('%') == std::string::npos) return s;
  replace_all(s, "%width%", std::to_string(image_width));
  replace_all(s, "%height%", std::to_string(image_height));
  replace_all(s, "%year%", std::to_string(now.tm_year + 1900));
  replace_all(s, "%month%", two_digits(now.tm_mon + 1));
  replace_all(s, "%day%", two_digits(now.tm_mday));
  replace_all(s, "%hour%", two_digits(now.tm_hour));
  replace_all(s, "%minute%", two_digits(now.tm_min));
  replace_all(s, "%second%", two_digits(now.tm_sec));
  return s;
}

SavePath resolve_save_path(const fs::path& output_root, std::string prefix, int image_width,
                           int image_height) {
  const std::time_t t = std::time(nullptr);
  std::tm now{};
  localtime_r(&t, &now);
  return resolve_save_path(output_root, std::move(prefix), image_width, image_height, now);
}

SavePath resolve_save_path(const fs::path& output_root, std::string prefix, int image_width, int image_height,
                           const std::tm& now) {
  prefix = expand_save_prefix(prefix, image_width, image_height, now);
  const std::string quoted = "filename_prefix '" + prefix + "'";
  if (prefix.find('\0') != std::string::npos)
    throw Error(ErrorKind::kValidation, "filename_prefix contains a NUL byte");
  std::vector<std::string> parts = normalized_parts(prefix);
  if (is_absolute_name(prefix) || (!parts.empty() && parts.front() == "..")) {
    throw Error(ErrorKind::kValidation, quoted + " leaves the output folder " + output_root.string() +
                                            " (saving outside it is not allowed)");
  }
  if (parts.empty()) throw Error(ErrorKind::kValidation, quoted + " names no file");

  SavePath result;
  result.filename = parts.back();
  parts.pop_back();
  for (const std::string& p : parts) result.subfolder += (result.subfolder.empty() ? "" : "/") + p;
  result.folder = result.subfolder.empty()
                      ? output_root
                      : confine(output_root, result.subfolder, "filename_prefix subfolder");

  std::error_code ec;
  fs::create_directories(result.folder, ec);
  if (ec)
    throw Error(ErrorKind::kIo,
                "cannot create output folder " + result.folder.string() + ": " + ec.message());
  int64_t highest = 0;
  fs::directory_iterator it(result.folder, ec);
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    highest = std::max(highest, counter_of(it->path().filename().string(), result.filename));
  }
  if (ec)
    throw Error(ErrorKind::kIo, "cannot list output folder " + result.folder.string() + ": " + ec.message());
  if (highest >= INT_MAX)
    throw Error(ErrorKind::kIo, "no free file number left in " + result.folder.string());
  result.counter = static_cast<int>(highest) + 1;
  return result;
}

std::string save_file_name(const std::string& filename, int counter, int batch_index) {
  std::string name = filename;
  replace_all(name, "%batch_num%", std::to_string(batch_index));
  char suffix[32];
  std::snprintf(suffix, sizeof(suffix), "_%05d_.png", counter);
  return name + suffix;
}

}  // namespace sdflow
