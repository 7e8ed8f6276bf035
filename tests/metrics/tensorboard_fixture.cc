// Writes a small, known TensorBoard event file into the directory given as argv[1], for
// tools/read_tensorboard.py to read back with the real TensorBoard (see CMakeLists.txt for the
// values it expects).
#include <iostream>

#include "metrics/tensorboard.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tensorboard_fixture RUN_DIR\n";
    return 2;
  }
  auto writer = loom::TensorBoardWriter::Create(argv[1]);
  if (!writer.ok()) {
    std::cerr << writer.status() << "\n";
    return 1;
  }
  const float losses[] = {3.5f, 3.25f, 0.1f};
  for (int step = 1; step <= 3; ++step) {
    std::vector<std::pair<std::string, float>> scalars = {{"train/loss", losses[step - 1]},
                                                          {"train/lr", 3e-4f * step / 3}};
    if (step == 3) scalars.emplace_back("val/loss", 2.75f);
    absl::Status s = (*writer)->WriteScalars(step, scalars);
    if (!s.ok()) {
      std::cerr << s << "\n";
      return 1;
    }
  }
  std::cout << (*writer)->path() << "\n";
  return 0;
}
