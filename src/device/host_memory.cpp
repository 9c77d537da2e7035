#include <sys/resource.h>
#include <unistd.h>

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
}  // namespace

HostMemory host_memory() {
  HostMemory m;
  m.total = meminfo_kib("MemTotal") * 1024;
  m.available = meminfo_kib("MemAvailable") * 1024;
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (statm >> size >> resident) m.rss = resident * sysconf(_SC_PAGESIZE);
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0) m.peak_rss = static_cast<int64_t>(ru.ru_maxrss) * 1024;
  return m;
}

}  // namespace sdflow
