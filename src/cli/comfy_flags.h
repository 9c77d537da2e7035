// ComfyUI's memory, precision, attention and cache flags (exact spellings, comfy/cli_args.py),
// bound to sdflow::MemoryOptions. Mutually exclusive groups are checked like argparse does.
#pragma once

#include <CLI/CLI.hpp>

#include "sdflow/memory.h"

namespace sdflow::cli {

// Adds the flags to `app`; call check_comfy_flags after parsing.
void add_comfy_flags(CLI::App& app, MemoryOptions& options);
// Applies the parsed flags to `options` and enforces ComfyUI's exclusive groups; throws
// CLI::ValidationError naming the conflicting flags.
void finish_comfy_flags(CLI::App& app, MemoryOptions& options);

}  // namespace sdflow::cli
