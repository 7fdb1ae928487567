# A rank that fails ends every rank within seconds, never a hang (run by CTest under the MPI
# environment of tests/CMakeLists.txt):
#   - a rank throws while the others wait in a collective: exit non-zero, its error named
#     "anchorctx: error: rank R: ...";
#   - a rank is killed (SIGKILL) while the others wait: Open MPI's mpirun ends the job;
#   - a rank's error unwinds past the world communicator: its destructor ends every rank;
#   - the same two in a training run that saves every 5 steps, failing after step 7: the
#     checkpoint of step 5 is complete and nothing later was written.
#   cmake -DMPIEXEC=mpirun -DCOLLECTIVES=... -DDATA_PARALLEL=... -DWORK=dir -P mpi_failure.cmake
cmake_minimum_required(VERSION 3.25)
foreach(var MPIEXEC COLLECTIVES DATA_PARALLEL WORK)
  if(NOT ${var})
    message(FATAL_ERROR "pass -D${var}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

# The seconds a failing run may take: start-up of a few processes plus the abort.
set(limit 20)

# Runs mpirun ARGN, requires a non-zero exit within ${limit} s and stderr+stdout matching regex.
function(expect_world_stops what regex)
  string(TIMESTAMP t0 "%s")
  execute_process(COMMAND ${MPIEXEC} --oversubscribe ${ARGN} TIMEOUT 60
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(TIMESTAMP t1 "%s")
  math(EXPR seconds "${t1} - ${t0}")
  if(rc EQUAL 0 OR rc MATCHES "timeout")
    message(FATAL_ERROR "${what}: exit '${rc}' after ${seconds} s, expected every rank to stop "
                        "with an error\n${out}\n${err}")
  endif()
  if(seconds GREATER ${limit})
    message(FATAL_ERROR "${what}: the ranks took ${seconds} s to stop (limit ${limit} s)")
  endif()
  if(NOT "${out}${err}" MATCHES "${regex}")
    message(FATAL_ERROR "${what}: output does not match '${regex}':\n${out}\n${err}")
  endif()
  message(STATUS "${what}: stopped in ${seconds} s (exit ${rc})")
endfunction()

expect_world_stops("collectives, rank 1 throws" "anchorctx: error: rank 1: failing on purpose"
                   -np 2 ${COLLECTIVES} 64 throw 1)
expect_world_stops("collectives, rank 2 of 4 throws" "anchorctx: error: rank 2: failing on purpose"
                   -np 4 ${COLLECTIVES} 64 throw 2)
expect_world_stops("collectives, rank 1 killed" "signal 9|Killed|killed"
                   -np 2 ${COLLECTIVES} 64 kill 1)
# The error is caught only above the communicator (as main catches a command's): its destructor
# ends the world instead of waiting in MPI_Finalize (which hung `bench train` forever).
expect_world_stops("collectives, rank 1's error unwinds past the communicator"
                   "anchorctx: error: rank 1: an error ended this rank"
                   -np 2 ${COLLECTIVES} 64 unwind 1)

foreach(how throw kill)
  set(dir "${WORK}/${how}")
  if(how STREQUAL "throw")
    set(regex "anchorctx: error: rank 1: failing on purpose after step 7")
  else()
    set(regex "signal 9|Killed|killed")
  endif()
  expect_world_stops("training, rank 1 ${how}" "${regex}" -np 2 ${DATA_PARALLEL} ${dir} ${how} 1 7)
  set(checkpoints "${dir}/failing/checkpoints")
  if(NOT EXISTS "${checkpoints}/step-000005/trainer_state.json"
     OR NOT EXISTS "${checkpoints}/step-000005/model.safetensors"
     OR NOT EXISTS "${checkpoints}/step-000005/optimizer.safetensors")
    message(FATAL_ERROR "training, rank 1 ${how}: the checkpoint of step 5 is not complete")
  endif()
  file(GLOB later "${checkpoints}/step-0000[1-9]*")
  if(later)
    message(FATAL_ERROR "training, rank 1 ${how}: checkpoints after the failure: ${later}")
  endif()
  file(READ "${checkpoints}/step-000005/trainer_state.json" state)
  string(JSON step GET "${state}" step)
  if(NOT step EQUAL 5)
    message(FATAL_ERROR "training, rank 1 ${how}: trainer_state.json of step-000005 says ${step}")
  endif()
endforeach()
