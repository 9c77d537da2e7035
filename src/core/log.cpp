#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace sdflow::log {

namespace {
// Messages go to stderr: stdout is reserved for results (JSON, tables) that scripts parse.
std::shared_ptr<spdlog::logger> make_stderr_logger() {
  auto logger = spdlog::stderr_color_mt("sdflow");
  logger->set_pattern("%^%l%$: %v");
  return logger;
}
}  // namespace

void set_level(Level level) {
  static auto logger = [] {
    auto l = spdlog::get("sdflow");
    if (!l) l = make_stderr_logger();
    spdlog::set_default_logger(l);
    return l;
  }();
  switch (level) {
    case Level::kDebug: logger->set_level(spdlog::level::debug); break;
    case Level::kInfo: logger->set_level(spdlog::level::info); break;
    case Level::kWarn: logger->set_level(spdlog::level::warn); break;
    case Level::kError: logger->set_level(spdlog::level::err); break;
    case Level::kOff: logger->set_level(spdlog::level::off); break;
  }
}

}  // namespace sdflow::log
