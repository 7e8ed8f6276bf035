// `loom bench scaling`: one `mpirun ... loom train` per rank count of a sweep, reduced to a
// table (plan/scaling.h) and written as CSV, JSON and an SVG plot.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "job/config.h"
#include "launcher/command.h"
#include "model/gpt_config.h"
#include "parallel/pipeline_simulator.h"
#include "plan/scaling.h"
#include "runtime/files.h"
#include "runtime/status.h"

namespace loom {
namespace {

constexpr char kDescription[] =
    "Runs `mpirun -np R loom train` for each R of --ranks and prints, per point: the layout,\n"
    "tokens/s, tokens/s per rank, scaling efficiency (per-rank throughput against the first\n"
    "point's), achieved FLOP/s per rank, MFU, the share of the step in exposed communication\n"
    "and in pipeline bubble (the schedule's formula), and rank 0's peak memory. Writes\n"
    "DIR/scaling.csv, scaling.json and scaling.svg (tokens/s and efficiency against ranks,\n"
    "beside the ideal line); each point's run (metrics.jsonl and log) is in DIR/ranks_R.\n"
    "--mode weak: the global batch grows with the ranks (sequences per rank constant);\n"
    "--mode strong: the config's global batch at every point.";

// Runs argv, its output appended to `log`; returns the exit status.
absl::StatusOr<int> RunLogged(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stdout);
    if (f == nullptr) _exit(126);
    dup2(fileno(stdout), fileno(stderr));
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return absl::InternalError("waitpid failed");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

absl::Status RunBenchScaling(const std::vector<std::string>& args) {
  std::string path;
  std::vector<std::string> overrides;
  std::vector<int> ranks;
  std::string mode_name, out = "scaling_runs", hostfile, mpirun = "mpirun", mpirun_args;
  int tp = 1, steps = 10, warmup = 2;
  FlagSet flags("loom bench scaling", kDescription);
  flags.JobFlags(&path, &overrides);
  flags
      .Custom("--ranks", "1,2,4,8", "the rank counts of the sweep, increasing",
              [&](absl::string_view value) -> absl::Status {
                ranks.clear();
                for (absl::string_view r : absl::StrSplit(value, ',')) {
                  int n = 0;
                  if (!absl::SimpleAtoi(r, &n) || n < 1 || (!ranks.empty() && n <= ranks.back())) {
                    return absl::InvalidArgumentError(absl::StrCat(
                        "expects increasing positive integers (1,2,4,8), got '", value, "'"));
                  }
                  ranks.push_back(n);
                }
                return absl::OkStatus();
              })
      .Required();
  flags.Choice("--mode", &mode_name, {"weak", "strong"}, "how the global batch follows the ranks")
      .Required();
  flags.Int("--tp", &tp, "T", "tensor-parallel degree min(T, R) (1: data parallel only)")
      .AtLeast(1);
  flags.Int("--steps", &steps, "N", "training steps per point").AtLeast(1);
  flags.Int("--warmup", &warmup, "K", "steps left out of the averages").AtLeast(0);
  flags.String("--out", &out, "DIR", "where the runs, the table and the plot go");
  flags.String("--hostfile", &hostfile, "H", "passed to mpirun");
  flags.String("--mpirun", &mpirun, "PATH", "the mpirun to start each point with");
  flags.String("--mpirun-args", &mpirun_args, "\"...\"",
               "more mpirun arguments, e.g. \"--mca btl_tcp_if_include eth0\"");
  LOOM_ASSIGN_OR_RETURN(bool run, flags.Parse(args));
  if (!run) return absl::OkStatus();
  const ScalingMode mode = mode_name == "weak" ? ScalingMode::kWeak : ScalingMode::kStrong;
  LOOM_ASSIGN_OR_RETURN(JobConfig config, LoadJobConfig(path, overrides));
  std::error_code ec;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (ec) return absl::InternalError("cannot find the loom binary (/proc/self/exe)");
  LOOM_RETURN_IF_ERROR(MakeDirs(out));

  std::vector<ScalingPoint> points;
  for (int n : ranks) {
    LOOM_ASSIGN_OR_RETURN(std::vector<std::string> sets,
                          ScalingOverrides(config, mode, ranks.front(), n, tp));
    const std::string run_dir = (std::filesystem::path(out) / absl::StrCat("ranks_", n)).string();
    std::vector<std::string> cmd = {mpirun, "-np", absl::StrCat(n), "--bind-to", "none"};
    if (!hostfile.empty()) cmd.insert(cmd.end(), {"--hostfile", hostfile});
    for (absl::string_view a : absl::StrSplit(mpirun_args, ' ', absl::SkipEmpty())) {
      cmd.emplace_back(a);
    }
    cmd.insert(cmd.end(), {self, "train", "--config", path});
    for (const std::string& o : overrides) cmd.insert(cmd.end(), {"--set", o});
    for (const std::string& o : sets) cmd.insert(cmd.end(), {"--set", o});
    cmd.insert(cmd.end(), {"--set", absl::StrCat("lr_schedule.total_steps=", steps), "--set",
                           "runtime.stop_at_step=0", "--set",
                           absl::StrCat("logging.run_dir=", run_dir), "--set", "logging.interval=1",
                           "--set", "logging.overwrite=true", "--set", "logging.eval_interval=0",
                           "--set", "logging.sample_interval=0", "--set", "checkpoint.dir="});
    const std::string log = run_dir + ".log";
    std::cerr << "bench scaling: " << n << " rank(s): " << absl::StrJoin(sets, " ") << std::endl;
    LOOM_ASSIGN_OR_RETURN(int rc, RunLogged(cmd, log));
    if (rc != 0) {
      return absl::InternalError(
          absl::StrCat("the ", n, "-rank run failed (exit ", rc, "); its output is in ", log));
    }
    ScalingPoint p;
    p.ranks = n;
    JobConfig point_job = config;
    for (const std::string& o : sets) LOOM_RETURN_IF_ERROR(ApplyOverride(&point_job, o));
    p.tp = point_job.parallel().tp();
    p.dp = point_job.parallel().dp();
    p.pp = std::max(1, point_job.parallel().pp());
    p.global_batch = point_job.parallel().global_batch_size();
    // The schedule's bubble for uniform stages, from the pipeline simulator (one home).
    LOOM_ASSIGN_OR_RETURN(JobLayout layout, JobLayout::Create(point_job, n));
    LOOM_ASSIGN_OR_RETURN(PipelineBubble bubble,
                          SchedulePipelineBubble(layout.schedule, layout.pipeline_shape()));
    p.bubble_share = bubble.bubble_fraction;
    LOOM_RETURN_IF_ERROR(ReadRunMetrics(run_dir, warmup, &p));
    points.push_back(p);
  }
  const GptConfig g = GptConfigFromJob(config);
  FinishScaling(TrainingFlopsPerToken(g, ParameterCount(config.model()), config.data().seq_len()),
                &points);
  const auto file = [&](const char* name) { return (std::filesystem::path(out) / name).string(); };
  LOOM_RETURN_IF_ERROR(AtomicWriteFile(file("scaling.csv"), ScalingCsv(points)));
  LOOM_RETURN_IF_ERROR(AtomicWriteFile(file("scaling.json"), ScalingJson(points, mode)));
  LOOM_RETURN_IF_ERROR(AtomicWriteFile(file("scaling.svg"), ScalingSvg(points, mode)));
  std::cout << "# loom bench scaling: " << path << ", " << mode_name << " scaling, " << steps
            << " steps per point (" << warmup << " left out)\n"
            << FormatScalingTable(points) << "# wrote " << file("scaling.csv") << ", "
            << file("scaling.json") << ", " << file("scaling.svg") << "\n";
  return absl::OkStatus();
}

}  // namespace

LOOM_REGISTER_COMMAND(bench_scaling, "bench scaling",
                      "weak or strong scaling sweep: one mpirun per rank count, table and plot",
                      RunBenchScaling);

}  // namespace loom
