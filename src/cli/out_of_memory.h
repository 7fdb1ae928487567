// What `anchorctx` says when an allocation fails: the size that failed and the process's memory
// beside its limits, where a bare "out of memory" left a user to guess whether a size option, a
// ulimit or the machine was at fault.
#pragma once

#include <cstddef>
#include <string>

namespace anchorctx::cli {

// The size of the last operator new that failed in this process (0: none, or not known).
std::size_t failed_allocation_bytes();

// "out of memory: an allocation of 8.0 TiB failed (the process's peak 2.1 GiB resident, 2.5 GiB
// of address space; address-space limit (ulimit -v) 4.0 GiB; the machine 23.4 GiB)", each part
// where known.
std::string out_of_memory_message();

}  // namespace anchorctx::cli
