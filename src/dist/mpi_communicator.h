// The MPI backend of the Communicator (communicator.h), private to dist/: world.cpp creates it
// when the process was started by an MPI launcher.
#pragma once

#include <cstddef>
#include <memory>

#include "anchorctx/dist/communicator.h"

namespace anchorctx::dist {

// Initialises MPI (MPI_THREAD_FUNNELED: only the main thread calls MPI; OpenMP threads compute)
// and returns MPI_COMM_WORLD's communicator, which finalises MPI when destroyed.
// `max_message_floats`: the most elements one rank sends one peer in a single MPI call (MPI
// counts are int); larger exchanges run in rounds. 0 takes the default; tests pass a small
// number to run the rounds on small data.
std::unique_ptr<Communicator> make_mpi_world_communicator(std::size_t max_message_floats = 0);

}  // namespace anchorctx::dist
