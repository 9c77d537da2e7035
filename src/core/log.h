// Logging facade: the rest of the code logs through these, never through spdlog directly,
// so the sink (stderr, quiet, verbose, a library host's callback) is decided in one place.
#pragma once

#include <spdlog/spdlog.h>

namespace sdflow::log {

enum class Level { kDebug, kInfo, kWarn, kError, kOff };

void set_level(Level level);

template <typename... Args>
void debug(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::debug(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void info(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::info(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::warn(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void error(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::error(fmt, std::forward<Args>(args)...);
}

}  // namespace sdflow::log
