# `mpirun anchorctx train` end to end (run by CTest under the MPI environment of
# tests/CMakeLists.txt): rank 0 alone writes the outputs; a 2-process run repeated gives the same
# metrics and weights byte for byte; a wrong --world-size, a resume at another world size and a
# bad option on one rank are refused before any training; `bench train` ends every rank when one
# fails, and runs --sp 2 in bf16 with shards under 128 tokens.
#   cmake -DMPIEXEC=mpirun -DEXE=anchorctx -DWORK=dir -P mpi_train_cli.cmake
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/../cli/cli_checks.cmake)
require_variables(MPIEXEC EXE WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

set(corpus "")
foreach(i RANGE 1 40)
  math(EXPR words "5 + (${i} * 7) % 23")
  set(text "document ${i}:")
  foreach(w RANGE 1 ${words})
    string(APPEND text " word${w} of ${i}")
  endforeach()
  string(APPEND corpus "{\"text\": \"${text}.\"}\n")
endforeach()
file(WRITE "${WORK}/corpus.jsonl" "${corpus}")
run_ok(packed pack --input "${WORK}/corpus.jsonl" --tokenizer byte --seq-len 64
       --out "${WORK}/data" --quiet --json)

set(options --preset tiny --precision fp32 --threads 1
           --grad-accum 1 --batch-windows 1 --no-tensorboard --no-verify-data)
set(common --data "${WORK}/data" ${options} --steps 6)

# Runs mpirun -np N anchorctx ARGN; requires exit 0; stdout in out_var, stderr in err_var.
function(mpi_ok n out_var err_var)
  execute_process(COMMAND ${MPIEXEC} --oversubscribe -np ${n} ${EXE} ${ARGN} TIMEOUT 90
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "mpirun -np ${n} anchorctx ${ARGN}: exit ${rc}\n${out}\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
  set(${err_var} "${err}" PARENT_SCOPE)
endfunction()

# Runs mpirun ARGN (a whole command line after -np ...); requires a failure matching regex.
function(mpi_fails regex)
  execute_process(COMMAND ${MPIEXEC} --oversubscribe ${ARGN} TIMEOUT 60
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0 OR rc MATCHES "timeout")
    message(FATAL_ERROR "mpirun ${ARGN}: exit '${rc}', expected a refusal\n${out}\n${err}")
  endif()
  if(NOT "${err}" MATCHES "${regex}")
    message(FATAL_ERROR "mpirun ${ARGN}: stderr does not match '${regex}':\n${err}")
  endif()
endfunction()

# Two processes, twice: one JSON result (rank 0's), one metrics line per step, same bytes.
foreach(run a b)
  mpi_ok(2 out err train ${common} --out "${WORK}/${run}" --json)
  string(REGEX MATCHALL "\"loss_last\"" results "${out}")
  list(LENGTH results n)
  expect_equal("JSON results printed by 2 ranks (rank 0 only)" "${n}" "1")
  if(NOT err MATCHES "2 processes \\(data parallel 2, sequence parallel 1\\), global batch 2 windows; optimizer state")
    message(FATAL_ERROR "the startup line of a 2-process run is missing:\n${err}")
  endif()
  file(STRINGS "${WORK}/${run}/metrics.jsonl" lines)
  list(LENGTH lines n)
  expect_equal("metrics.jsonl lines of a 6-step run on 2 ranks" "${n}" "6")
endforeach()
# The recorded losses and gradient norms (metrics.jsonl also holds timings).
function(read_metrics run out_var)
  file(STRINGS "${run}/metrics.jsonl" lines)
  set(values "")
  foreach(line IN LISTS lines)
    string(JSON loss GET "${line}" loss)
    string(JSON norm GET "${line}" grad_norm)
    list(APPEND values "${loss}/${norm}")
  endforeach()
  set(${out_var} "${values}" PARENT_SCOPE)
endfunction()
read_metrics("${WORK}/a" metrics_a)
read_metrics("${WORK}/b" metrics_b)
expect_equal("losses and gradient norms of two identical 2-process runs" "${metrics_b}"
             "${metrics_a}")
foreach(file checkpoints/step-000006/model.safetensors
             checkpoints/step-000006/optimizer.safetensors)
  file(SHA256 "${WORK}/a/${file}" ha)
  file(SHA256 "${WORK}/b/${file}" hb)
  expect_equal("${file} of two identical 2-process runs" "${ha}" "${hb}")
endforeach()

# --shard-optimizer writes the same checkpoint (the moments gathered to rank 0).
mpi_ok(2 out err train ${common} --out "${WORK}/zero" --shard-optimizer)
if(NOT err MATCHES "per rank \\(sharded, ZeRO-1\\)")
  message(FATAL_ERROR "--shard-optimizer: the startup line does not say so:\n${err}")
endif()
foreach(file model.safetensors optimizer.safetensors)
  file(SHA256 "${WORK}/a/checkpoints/step-000006/${file}" ha)
  file(SHA256 "${WORK}/zero/checkpoints/step-000006/${file}" hz)
  expect_equal("${file}: sharded against replicated optimizer" "${hz}" "${ha}")
endforeach()

# Refused before any work: a --world-size other than the launch (no run folder created) ...
mpi_fails("--world-size 3 but 2 processes were launched"
          -np 2 ${EXE} train ${common} --out "${WORK}/wrong_size" --world-size 3)
if(EXISTS "${WORK}/wrong_size")
  message(FATAL_ERROR "a refused --world-size created the run folder")
endif()
# ... a resume at another world size, naming both ...
mpi_fails("world-size: 2 -> 1" -np 1 ${EXE} train --data "${WORK}/data" ${options} --out "${WORK}/a"
          --steps 8 --resume)
# ... and a bad option on one rank only (MPMD launch): that rank's error, every rank stops.
mpi_fails("rank 1: .*missing_data"
          -np 1 ${EXE} train ${common} --out "${WORK}/mpmd" :
          -np 1 ${EXE} train ${options} --out "${WORK}/mpmd" --data "${WORK}/missing_data")
# ... and valid options that differ (another --steps hung the job, another --seed trained a mix
# of two runs and exited 0): refused on every rank before any step.
mpi_fails("ranks were started with options, data or a model other than rank 0's"
          -np 1 ${EXE} train ${common} --out "${WORK}/mpmd2" :
          -np 1 ${EXE} train ${common} --out "${WORK}/mpmd2" --seed 7)
mpi_fails("ranks were started with options, data or a model other than rank 0's"
          -np 1 ${EXE} train ${common} --out "${WORK}/mpmd3" :
          -np 1 ${EXE} train ${options} --data "${WORK}/data" --steps 3 --out "${WORK}/mpmd3")

# `bench train`: a rank that fails alone after MPI started (MPMD: rank 1's --docs file is
# missing, read after the communicator is made) ends every rank with its error: it hung forever,
# rank 1 in MPI_Finalize and rank 0 in the step's barrier.
set(bench bench train --preset tiny --seq-len 64 --steps 1 --warmup 0 --threads 1 --precision fp32
          --json)
mpi_fails("rank 1: .*missing_docs" -np 1 ${EXE} ${bench} : -np 1 ${EXE} ${bench}
          --docs "file:${WORK}/missing_docs")
# `bench train --sp 2` in bf16 (native oneDNN GEMMs where the CPU has AVX512_BF16) at T = 130:
# shards of 128 and 2 tokens, so GEMMs narrower than one 128-row block (oneDNN refused them).
mpi_ok(2 out err bench train --preset tiny --seq-len 130 --sp 2 --steps 1 --warmup 0 --threads 1
       --precision bf16 --json)

# The same world size resumes, and may switch the optimizer sharding (the state is whole on disk).
mpi_ok(2 out err train --data "${WORK}/data" ${options} --out "${WORK}/a" --steps 8 --resume
       --shard-optimizer)
if(NOT err MATCHES "taking shard-optimizer: false -> true")
  message(FATAL_ERROR "a resume that turns on --shard-optimizer does not report it:\n${err}")
endif()
