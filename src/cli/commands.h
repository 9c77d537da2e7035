// The sdflow subcommands, each a function of its parsed arguments returning the exit code.
#pragma once

#include <string>
#include <vector>

#include "sdflow/engine.h"

namespace sdflow::cli {

struct CommonOptions {
  bool verbose = false;
  bool quiet = false;
  EngineOptions engine;
};

struct RunArgs {
  std::string workflow;
  std::vector<std::string> sets;
  bool json_progress = false;
  std::string report;
};

struct ValidateArgs {
  std::string workflow;
  std::vector<std::string> sets;
  bool strict = false;
  bool json = false;
};

struct PlanArgs {
  std::string workflow;
  std::vector<std::string> sets;
  bool json = false;
  int assume_cc = 8;
};

struct NodesArgs {
  bool json = false;
};

struct InfoArgs {
  std::string file;
  bool json = false;
  bool list_tensors = false;
};

struct MakeCheckpointArgs {
  std::string arch = "sd15";
  bool tiny = false;
  uint64_t seed = 0;
  std::string dtype = "fp16";
  std::string out;
  bool split = false;  // separate UNet / text encoder / VAE files under `out` (a models folder)
  std::string name;    // their file name stem
};

int command_run(const CommonOptions& common, const RunArgs& args);
int command_validate(const CommonOptions& common, const ValidateArgs& args);
int command_plan(const CommonOptions& common, const PlanArgs& args);
int command_nodes(const CommonOptions& common, const NodesArgs& args);
int command_info(const CommonOptions& common, const InfoArgs& args);
struct MakeLoraArgs {
  std::string checkpoint;  // --for
  int64_t rank = 4;
  uint64_t seed = 0;
  std::string format = "kohya";
  double alpha = 0;  // 0: the rank (scale 1)
  std::string out;
};

int command_make_checkpoint(const CommonOptions& common, const MakeCheckpointArgs& args);
int command_make_lora(const CommonOptions& common, const MakeLoraArgs& args);

}  // namespace sdflow::cli
