// The machine description every result file carries.
#include <sys/utsname.h>
#include <unistd.h>

#include <ctime>
#include <fstream>

#include "analysis/results.h"
#include "support/isa.h"
#include "support/memory.h"
#include "support/threading.h"

namespace goldilocks::analysis {

MachineInfo describe_machine() {
  MachineInfo m;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      m.cpu_model = line.substr(line.find(':') + 2);
      break;
    }
  }
  if (m.cpu_model.empty()) m.cpu_model = "unknown";
  m.logical_cores = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  m.available_cores = support::available_cores();
  m.memory_bytes = support::physical_memory_bytes();
  utsname u{};
  if (uname(&u) == 0) m.os = std::string(u.sysname) + " " + u.release + " " + u.machine;
#if defined(__clang__)
  m.compiler = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  m.compiler = std::string("gcc ") + __VERSION__;
#endif
#ifdef NDEBUG
  m.build_type = "optimised (NDEBUG)";
#else
  m.build_type = "debug (assertions on)";
#endif
#ifdef __SANITIZE_ADDRESS__
  m.build_type += ", AddressSanitizer";
#endif
  std::ifstream loadavg("/proc/loadavg");
  loadavg >> m.load_average;
  m.flash_isa = support::isa_name(false);
  return m;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace goldilocks::analysis
