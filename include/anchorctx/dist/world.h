// The world of this process: which communicator a run gets, chosen by how it was launched.
//
// Launched by an MPI launcher (mpirun / mpiexec of Open MPI or MPICH, srun with PMI): the MPI
// backend, MPI_Init on creation and MPI_Finalize when the returned communicator is destroyed
// (so every sub-communicator from split() must be destroyed first). Started directly: the
// single-process communicator. One place owns MPI's lifetime; nothing else calls MPI_Init.
#pragma once

#include <functional>
#include <memory>
#include <optional>

#include "anchorctx/dist/communicator.h"

namespace anchorctx::dist {

// Whether this build has the MPI backend (CMake option ANCHORCTX_WITH_MPI, MPI found).
bool mpi_available();

// The number of processes the launcher started, read from its environment
// (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_SIZE, ...); nullopt when no launcher started us.
std::optional<int> launcher_world_size();

// The communicator of this run (see above). Throws anchorctx::Error when a launcher started
// several processes but this build has no MPI (each would train alone on the same data).
std::unique_ptr<Communicator> make_world_communicator();

// Runs `body`, a command's work over `world`: the one way every multi-rank command meets an
// error. An exception from `body` on one rank of several ends every rank (world.abort with the
// error's message: "anchorctx: error: rank R: ..."), never leaves the others waiting in a
// collective this rank will not join; in a world of one it reaches the caller (main prints it).
// (Should an exception unwind past the MPI world anyway, its destructor aborts instead of
// calling MPI_Finalize, which would wait for the other ranks forever.)
void run_or_abort(Communicator& world, const std::function<void()>& body);

}  // namespace anchorctx::dist
