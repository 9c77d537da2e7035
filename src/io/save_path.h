// Where SaveImage/PreviewImage put their files: ComfyUI's folder_paths.get_save_image_path
// (COMFY_COMPAT.md 6.2). Not safe against another process saving with the same prefix at the
// same moment (neither is ComfyUI); within one engine, saves are serialised by the executor.
#pragma once

#include <ctime>
#include <filesystem>
#include <string>

namespace sdflow {

struct SavePath {
  std::filesystem::path folder;  // output_root, or the confined output_root/subfolder; exists
  std::string filename;          // the prefix's last component (may hold %batch_num%)
  std::string subfolder;         // '/'-separated, "" for the output root itself
  int counter = 1;               // the number of the first file to write
};

// The prefix with %width% %height% %year% %month% %day% %hour% %minute% %second% replaced
// (the last five zero-padded to two digits).
std::string expand_save_prefix(const std::string& prefix, int image_width, int image_height,
                               const std::tm& now);

// Expands the prefix (local time now), splits it into subfolder and filename like
// os.path.normpath ('\' counts as a separator too), confines the subfolder to output_root
// (Error(kValidation) when it leaves it), creates it, and picks the counter: 1 + the largest
// number N over files there named "<filename>_N" or "<filename>_N_...", the prefix compared
// without regard to ASCII case; 1 when there are none. Error(kIo) when the folder cannot be
// created or read.
SavePath resolve_save_path(const std::filesystem::path& output_root, std::string prefix, int image_width,
                           int image_height);
// The same at a given local time (for tests).
SavePath resolve_save_path(const std::filesystem::path& output_root, std::string prefix, int image_width,
                           int image_height, const std::tm& now);

// "<filename with %batch_num% replaced by batch_index>_<counter, 5 digits>_.png".
std::string save_file_name(const std::string& filename, int counter, int batch_index);

}  // namespace sdflow
