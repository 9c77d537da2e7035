#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "device/device.h"

namespace sdflow {

namespace {
int64_t meminfo_kib(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string k;
  int64_t v = 0;
  std::string unit;
  while (in >> k >> v >> unit)
    if (k == key + ":") return v;
  return 0;
}
// A "VmHWM:  1234 kB" style line of /proc/self/status, in bytes; 0 when absent.
int64_t status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size() + 1, key + ":") != 0) continue;
    return std::atoll(line.c_str() + key.size() + 1);
  }
  return 0;
}
}  // namespace

void reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";  // resets VmHWM to the current RSS (Linux >= 4.0)
}

HostMemory host_memory() {
  HostMemory m;
  m.total = meminfo_kib("MemTotal") * 1024;
  m.available = meminfo_kib("MemAvailable") * 1024;
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (statm >> size >> resident) m.rss = resident * sysconf(_SC_PAGESIZE);
  // VmHWM follows reset_peak_rss(); ru_maxrss never resets.
  m.peak_rss = status_kib("VmHWM") * 1024;
  rusage ru{};
  if (m.peak_rss == 0 && getrusage(RUSAGE_SELF, &ru) == 0)
    m.peak_rss = static_cast<int64_t>(ru.ru_maxrss) * 1024;
  return m;
}

}  // namespace sdflow
