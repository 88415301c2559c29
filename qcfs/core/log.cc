#include "qcfs/core/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace qcfs {
namespace {

std::mutex g_sink_mu;  // guards g_sink
LogSink g_sink;
std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}

}  // namespace

void SetLogSink(LogSink sink) {
  std::lock_guard lock(g_sink_mu);
  g_sink = std::move(sink);
}

void SetLogLevel(LogLevel min_level) { g_min_level = static_cast<int>(min_level); }

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_min_level.load(std::memory_order_relaxed); }

void LogMessage(LogLevel level, std::string_view message) {
  std::lock_guard lock(g_sink_mu);
  if (g_sink) {
    g_sink(level, message);
    return;
  }
  std::fprintf(stderr, "qcfs: %s: %.*s\n", LevelName(level), static_cast<int>(message.size()), message.data());
}

}  // namespace qcfs
