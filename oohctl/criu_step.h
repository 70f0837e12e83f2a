// SPDX-License-Identifier: Apache-2.0
// The steps of `oohctl checkpoint` and `oohctl migrate` (each criu run, the
// verify command, an image transfer): run in their own process group under
// a deadline, and what criu printed (--display-stats) and logged read back
// to report rounds and failures. Also where the patched criu and the plugin
// are found.
#pragma once

#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace ooh {

// Prefix of every message oohctl checkpoint prints on stderr.
inline constexpr const char *kCheckpointCmd = "oohctl checkpoint";
// The same for oohctl migrate.
inline constexpr const char *kMigrateCmd = "oohctl migrate";

// One step of the chain: a criu run, or the verify command.
struct Step {
    std::string name; // for messages: "pre-dump 2", "dump", "restore", "verify"
    std::vector<std::string> argv;
    std::string stdoutPath; // its stdout goes there
    std::string logPath;    // what it logs, for the diagnosis
    std::vector<std::pair<std::string, std::string>> env;
    const char *tool = kCheckpointCmd; // prefix of the step's messages
};

// How a step ended.
struct StepOutcome {
    int status = 0;        // exit status or 128 + signal; -errno if it could not run
    bool expired = false;  // killed at its deadline
    int interruptedBy = 0; // killed because oohctl got this signal
    pid_t pid = 0;
    std::string wchan; // where it was blocked when killed
};

// What a criu pre-dump or dump says with --display-stats; wallSec is
// oohctl's own measure of the run.
struct RoundStats {
    unsigned long pagesWritten = 0;
    unsigned long pagesSkipped = 0; // "in parent"
    unsigned long frozenUs = 0;
    unsigned long freezingUs = 0;
    double wallSec = 0;
};

// Runs the step in its own process group, so that the step and whatever it
// started can be killed together. Waits for it, its deadline, or SIGINT,
// SIGTERM or SIGHUP to oohctl (which kill the step too).
StepOutcome runStep(const Step &step, unsigned long timeoutSec);

// A step that did not succeed: says which step, and for a killed one what
// it was waiting for (with a hint when criu's last log line tells).
// Returns oohctl's exit status.
int reportFailure(const Step &step, const StepOutcome &out, unsigned long timeoutSec);

// CRIU's --display-stats lines (printed on its stdout); nullopt without any.
std::optional<RoundStats> readCriuStats(const std::string &path);

// The patched criu: the build tree's (oohctl/../criu-plugin/criu), the
// installed one (bin/../libexec/ooh/criu), else criu from PATH.
std::string defaultCriu();

// The build tree's plugin directory if ooh_plugin.so is there, else empty
// (the patched criu then uses the directory it was built with).
std::string defaultPluginDir();

// What every subcommand does before its first local criu step: the plugin
// directory (defaultPluginDir() when empty) made absolute, since criu
// resolves -L after moving into the images directory; $OOH_SOCKET set from
// `socket` when given; the images directory `dir` made (0700) and made
// absolute. Prints why (prefixed with `cmd`) and returns false on failure.
bool prepareLocalCriu(const char *cmd, std::string *pluginDir, const std::string &socket,
                      std::string *dir);

// A decimal number, whole string; false on anything else.
bool parseUnsigned(const char *s, unsigned long *out);

// The first line of path, empty if it cannot be read.
std::string readFirstLine(const std::string &path);

// The last line of path that contains `needle` (any line if empty), read
// from its last 64 KiB: logs at -v4 get long.
std::string lastLogLine(const std::string &path, const char *needle = "");

} // namespace ooh
