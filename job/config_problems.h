// What is wrong with a job config in itself, one check per proto section (model, parallel,
// batch, sequence, optimizer and schedule, data/checkpoint/logging, runtime), each problem one
// sentence naming the fields and numbers; and what this build cannot do yet. JobLayout::Create
// runs them once; nothing else re-validates raw fields.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "proto/job.pb.h"

namespace loom {

// Every problem with `config` (defaults applied) for a job of `world_size` ranks, one sentence
// each naming the fields and numbers. Empty when the config is runnable.
std::vector<std::string> ConfigProblems(const JobConfig& config, int world_size);

// ConfigProblems without the checks on the data, checkpoint and logging fields and on what the
// token shards' format can hold (a vocabulary above 65,536 for uint16 shards): the problems a
// layout of the job can have. The layout planner (plan/plan.h) plans a job before any data
// exists, so it must not need them.
std::vector<std::string> LayoutProblems(const JobConfig& config, int world_size);

// What this build cannot do yet, for a config with defaults applied: one sentence per feature
// the job asks for, naming the field. Kept apart from ConfigProblems (which says what is wrong
// with a job in itself) so each entry can be deleted as its feature lands. Both `loom config
// check` and `loom train` refuse a job with any entry (see job/job_check.h).
std::vector<std::string> NotYetSupported(const JobConfig& config);

// The problems of data.sft (the fine-tuning data settings `loom data sft --config` uses), part
// of ConfigProblems: a chat_template that is neither a built-in name (qa, chatml, plain) nor a
// readable SftTemplate file, a tokenizer path that does not exist. One sentence each, naming
// the field.
std::vector<std::string> SftDataProblems(const JobConfig& config);

// ConfigProblems as one InvalidArgument status ("N problem(s) in the job config:" followed by one
// "  - ..." line per problem), or OK.
absl::Status ValidateJobConfig(const JobConfig& config, int world_size);

}  // namespace loom
