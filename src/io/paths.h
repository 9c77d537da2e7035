// Path confinement: every file name that comes from a workflow (ckpt_name, image, a save prefix)
// is resolved under one root folder and may not leave it — not by "..", not by an absolute
// path, not through a symlink. Workflows made on Windows use '\' as a separator; so do we.
#pragma once

#include <filesystem>
#include <string>

namespace sdflow {

// True when `name` is a non-empty relative name without NUL bytes, without a root or drive
// ("/x", "\x", "C:x") and without ".." components ('/' and '\' both separate). Lexical only:
// it does not look at the disk, so symlinks are checked by confine(), not here.
bool is_safe_relative_name(const std::string& name);

// True for "/x", "\x" and Windows drive paths ("C:\x", "C:x"): names that do not start in
// the folder they are given for.
bool is_absolute_name(const std::string& name);

// root / name, after checking is_safe_relative_name() and that the result, with symlinks
// resolved (std::filesystem::weakly_canonical of both), still lies inside root. The result is
// that resolved path; it need not exist. `what` names the value in messages ("ckpt_name").
// Throws Error(kValidation) for a refused name, Error(kIo) when the disk cannot be queried.
std::filesystem::path confine(const std::filesystem::path& root, const std::string& name,
                              const std::string& what);

}  // namespace sdflow
