// Which communicator a run gets (see world.h). The launcher is recognised by the environment it
// gives its processes: Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE, MPICH's Hydra and Slurm's
// srun PMI_SIZE, PMIx launchers PMIX_SIZE... A size of 1 (mpirun -np 1) still takes the MPI
// backend when there is one, so that N = 1 under mpirun runs the same code as N > 1.
#include "anchorctx/dist/world.h"

#include <charconv>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string_view>

#include "anchorctx/core/error.h"

#ifdef ANCHORCTX_HAVE_MPI
#include "dist/mpi_communicator.h"
#endif

namespace anchorctx::dist {

bool mpi_available() {
#ifdef ANCHORCTX_HAVE_MPI
  return true;
#else
  return false;
#endif
}

std::optional<int> launcher_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"}) {
    const char* value = std::getenv(name);
    if (value == nullptr) continue;
    int n = 0;
    const char* end = value + std::strlen(value);
    if (std::from_chars(value, end, n).ptr == end && n >= 1) return n;
  }
  return std::nullopt;
}

std::unique_ptr<Communicator> make_world_communicator() {
  const std::optional<int> launched = launcher_world_size();
  if (!launched) return make_single_process_communicator();
#ifdef ANCHORCTX_HAVE_MPI
  return make_mpi_world_communicator();
#else
  if (*launched > 1)
    fail(
        "started by an MPI launcher as one of {} processes, but this anchorctx was built "
        "without MPI: each process would train alone. Install libopenmpi-dev "
        "(tools/install-deps.sh) and rebuild (CMake option ANCHORCTX_WITH_MPI), or run one process",
        *launched);
  return make_single_process_communicator();
#endif
}

void run_or_abort(Communicator& world, const std::function<void()>& body) {
  try {
    body();
  } catch (const std::exception& e) {
    if (world.world_size() > 1) world.abort(e.what());
    throw;
  }
}

}  // namespace anchorctx::dist
