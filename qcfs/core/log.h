// Diagnostics from the engine. The engine never prints: it hands messages
// to a sink that the program installs (stderr for tools and foreground
// mounts, syslog for a background daemon). The default sink drops debug
// messages and writes the rest to stderr.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <fmt/core.h>

namespace qcfs {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

using LogSink = std::function<void(LogLevel, std::string_view)>;

// Replaces the process-wide sink. Thread-safe.
void SetLogSink(LogSink sink);
void SetLogLevel(LogLevel min_level);
void LogMessage(LogLevel level, std::string_view message);
bool LogEnabled(LogLevel level);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
  if (!LogEnabled(level)) return;
  LogMessage(level, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace qcfs
