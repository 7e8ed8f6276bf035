#include "parallel/rank_grid.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "parallel/communicator.h"

namespace loom {

const char* GroupKindName(GroupKind kind) {
  switch (kind) {
    case GroupKind::kTp:
      return "tp";
    case GroupKind::kDp:
      return "dp";
    case GroupKind::kPp:
      return "pp";
    case GroupKind::kModel:
      return "model";
    case GroupKind::kEmbedding:
      return "embedding";
    case GroupKind::kCp:
      return "cp";
    case GroupKind::kDpCp:
      return "dpcp";
  }
  return "?";
}

absl::StatusOr<RankGrid> RankGrid::Create(int world_size, int tp, int dp, int pp, int cp) {
  if (tp < 1 || dp < 1 || pp < 1 || cp < 1) {
    return absl::InvalidArgumentError(absl::StrCat("parallel degrees must be >= 1, got tp = ", tp,
                                                   ", dp = ", dp, ", pp = ", pp, ", cp = ", cp));
  }
  const int64_t product = static_cast<int64_t>(tp) * cp * dp * pp;
  if (product != world_size) {
    if (cp == 1) {
      return absl::InvalidArgumentError(absl::StrCat("the world has ", world_size,
                                                     " ranks but tp x dp x pp = ", tp, " x ", dp,
                                                     " x ", pp, " = ", product));
    }
    return absl::InvalidArgumentError(absl::StrCat("the world has ", world_size,
                                                   " ranks but tp x cp x dp x pp = ", tp, " x ",
                                                   cp, " x ", dp, " x ", pp, " = ", product));
  }
  return RankGrid(tp, dp, pp, cp);
}

GridCoord RankGrid::CoordOf(int rank) const {
  GridCoord c;
  c.tp = rank % tp_;
  c.cp = (rank / tp_) % cp_;
  c.dp = (rank / (tp_ * cp_)) % dp_;
  c.pp = rank / (tp_ * cp_ * dp_);
  return c;
}

std::vector<int> RankGrid::Group(GroupKind kind, int rank) const {
  const GridCoord me = CoordOf(rank);
  std::vector<int> out;
  switch (kind) {
    case GroupKind::kTp:
      for (int t = 0; t < tp_; ++t) out.push_back(RankOf({t, me.dp, me.pp, me.cp}));
      break;
    case GroupKind::kDp:
      for (int d = 0; d < dp_; ++d) out.push_back(RankOf({me.tp, d, me.pp, me.cp}));
      break;
    case GroupKind::kPp:
      for (int p = 0; p < pp_; ++p) out.push_back(RankOf({me.tp, me.dp, p, me.cp}));
      break;
    case GroupKind::kModel:
      for (int p = 0; p < pp_; ++p) {
        for (int t = 0; t < tp_; ++t) out.push_back(RankOf({t, me.dp, p, me.cp}));
      }
      break;
    case GroupKind::kEmbedding:
      if (pp_ == 1 || (me.pp != 0 && me.pp != pp_ - 1)) {
        out.push_back(rank);
      } else {
        out.push_back(RankOf({me.tp, me.dp, 0, me.cp}));
        out.push_back(RankOf({me.tp, me.dp, pp_ - 1, me.cp}));
      }
      break;
    case GroupKind::kCp:
      for (int k = 0; k < cp_; ++k) out.push_back(RankOf({me.tp, me.dp, me.pp, k}));
      break;
    case GroupKind::kDpCp:
      for (int d = 0; d < dp_; ++d) {
        for (int k = 0; k < cp_; ++k) out.push_back(RankOf({me.tp, d, me.pp, k}));
      }
      break;
  }
  return out;
}

std::vector<std::vector<int>> RankGrid::AllGroups(GroupKind kind) const {
  std::vector<std::vector<int>> out;
  std::set<int> seen;
  for (int r = 0; r < world_size(); ++r) {
    if (seen.count(r)) continue;
    std::vector<int> g = Group(kind, r);
    seen.insert(g.begin(), g.end());
    out.push_back(std::move(g));
  }
  return out;
}

std::string RankGrid::CoordString(int rank) const {
  const GridCoord c = CoordOf(rank);
  if (cp_ > 1) return absl::StrCat("dp ", c.dp, " pp ", c.pp, " tp ", c.tp, " cp ", c.cp);
  return absl::StrCat("dp ", c.dp, " pp ", c.pp, " tp ", c.tp);
}

std::string RankGrid::Describe(int max_ranks) const {
  std::string out =
      cp_ == 1 ? absl::StrCat("grid: tp ", tp_, " x dp ", dp_, " x pp ", pp_, " = ", world_size(),
                              " ranks; rank = tp_rank + ", tp_, " * (dp_rank + ", dp_,
                              " * pp_rank)\n")
               : absl::StrCat("grid: tp ", tp_, " x cp ", cp_, " x dp ", dp_, " x pp ", pp_, " = ",
                              world_size(), " ranks; rank = tp_rank + ", tp_, " * (cp_rank + ",
                              cp_, " * (dp_rank + ", dp_, " * pp_rank))\n");
  const int shown = std::min(world_size(), max_ranks);
  for (int r = 0; r < shown; ++r) {
    absl::StrAppend(&out, "  rank ", r, ": ", CoordString(r));
    for (GroupKind k : kAllGroupKinds) {
      absl::StrAppend(&out, "  ", GroupKindName(k), " [", FormatRankList(Group(k, r)), "]");
    }
    absl::StrAppend(&out, "\n");
  }
  if (shown < world_size()) {
    absl::StrAppend(&out, "  ... ", world_size() - shown,
                    " more ranks follow the same rule: tp groups are ", tp_,
                    " consecutive ranks, ",
                    cp_ > 1 ? absl::StrCat("cp groups stride ", tp_, ", ") : "",
                    "dp groups stride ", tp_ * cp_, ", pp groups stride ", tp_ * cp_ * dp_,
                    "; last rank ", world_size() - 1, ": ", CoordString(world_size() - 1), "\n");
  }
  return out;
}

}  // namespace loom
