// Files that LoadImage / LoadLatent read from the input folder: ComfyUI's annotated names and
// its IS_CHANGED fingerprint (hashlib.sha256(bytes).digest().hex(), which also ends up in
// saved prompts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "nodeapi/node.h"
#include "nodes/services.h"

namespace sdflow::nodes {

// ComfyUI's folder_paths.get_annotated_filepath: a name ending in "[output]", "[input]" or
// "[temp]" is looked up in that folder with the tag and the character before it (normally a
// space) removed; any other name is in the input folder. The name is confined to the folder
// (Error(kValidation) when it leaves it); the file need not exist.
std::filesystem::path resolve_annotated_file(const EnginePaths& paths, const std::string& name,
                                             const std::string& what);

// IS_CHANGED of a node reading the file named by the constant `input`: its SHA-256, or a
// text that no hash equals when it cannot be read (so it is never served from cache). Empty
// when the engine provides no EnginePaths.
std::string input_file_fingerprint(const Services& services, const nlohmann::json& constants,
                                   const std::string& input);
// VALIDATE_INPUTS of such a node: ComfyUI's "Invalid <kind> file: <name>" when it does not
// exist, the confinement message when the name leaves its folder.
std::vector<std::pair<std::string, std::string>> validate_input_file(const ValidationEnv& env,
                                                                     const nlohmann::json& constants,
                                                                     const std::string& input,
                                                                     const std::string& kind);

std::string sha256_hex(const uint8_t* data, size_t size);
// Reads the file in chunks; Error(kIo) naming the path when it cannot be read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace sdflow::nodes
