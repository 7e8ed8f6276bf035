// A job config as text: parsing a text-format JobConfig with every error located
// (file:line:column and the field path, model.layers), `--set path.to.field=value` overrides,
// loading a file (overrides, then defaults), and printing a config back.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/job.pb.h"

namespace loom {

// Parses text-format JobConfig. `source` (usually the file name) prefixes error messages.
// Applies no defaults. Reports every error it can find (up to 20), one line each; after an error
// on a line that opens or closes a block it stops, since later errors would be its echoes.
absl::StatusOr<JobConfig> ParseJobConfigText(const std::string& text, const std::string& source);

// Applies one override "path.to.field=value" in place. Scalars of every type and enums (by
// value name) are accepted; a repeated scalar field takes a comma-separated list, optionally in
// brackets ("parallel.stage_layers=[1,3]"), which replaces its contents; an empty value or "[]"
// clears it. A string value may be wrapped in double quotes.
absl::Status ApplyOverride(JobConfig* config, const std::string& assignment);

// Reads `path`, applies the overrides in order, then the defaults. A directory is refused; parse
// errors and every failing override are reported together.
absl::StatusOr<JobConfig> LoadJobConfig(const std::string& path,
                                        const std::vector<std::string>& overrides);

// The config in text format, every set field shown.
std::string JobConfigToText(const JobConfig& config);

}  // namespace loom
