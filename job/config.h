// The job config API in one include: text and overrides (config_text.h), defaults
// (config_defaults.h), validation (config_problems.h) and the typed layout derived once from a
// valid config (job_layout.h).
#pragma once

#include "job/config_defaults.h"
#include "job/config_problems.h"
#include "job/config_text.h"
#include "job/job_layout.h"
