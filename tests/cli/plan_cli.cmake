# `anchorctx plan` end to end (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -DFIXTURES=tests/data/fixtures -DWORK=dir -P plan_cli.cmake
# The table and --json on small models, the JSON's numbers consistent with the setup, a packed
# dataset as the document source, and the refusals naming the numbers.
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE FIXTURES WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(require_number json what)
  string(JSON value GET "${json}" ${ARGN})
  string(JSON type TYPE "${json}" ${ARGN})
  if(NOT type STREQUAL "NUMBER")
    message(FATAL_ERROR "${what}: ${type} '${value}', expected a number:\n${json}")
  endif()
endfunction()

# The table: one run, a few lines that must be there.
run_ok(table plan --preset reference --seq-len 4096 --gpus 4 --sp 2 --hardware a100-nvlink)
foreach(part "G = 4 ranks = DP 2 x SP 2" "all-to-all" "ring all-reduce over 4 ranks" "anchor"
        "intra_doc" "causal")
  string(FIND "${table}" "${part}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "plan table lacks '${part}':\n${table}")
  endif()
endforeach()

# --json: one object with the documented parts; DP = G / S, tokens per rank = T / S.
run_ok(j plan --preset reference --seq-len 4096 --gpus 8 --sp 4 --shard-optimizer
       --checkpointing on --json)
string(STRIP "${j}" j)
require_keys("${j}" model setup hardware estimate masks)
string(JSON dp GET "${j}" setup dp)
expect_equal("setup.dp" "${dp}" 2)
string(JSON max_sp GET "${j}" model max_sp)
expect_equal("model.max_sp" "${max_sp}" 8)
string(JSON tokens GET "${j}" estimate tokens_per_rank)
expect_equal("estimate.tokens_per_rank" "${tokens}" 1024)
string(JSON ranks GET "${j}" estimate communication_per_rank_bytes gradient_ranks)
expect_equal("gradient_ranks" "${ranks}" 8)
string(JSON ckpt GET "${j}" setup checkpointing)
expect_equal("setup.checkpointing" "${ckpt}" ON)
foreach(path "estimate;time_s;step" "estimate;flops_per_rank;model"
        "estimate;memory_per_rank_bytes;total" "estimate;communication_per_rank_bytes;a2a_step"
        "estimate;communication_per_rank_bytes;zero_all_gather" "masks;anchor;visible_fraction"
        "masks;causal;step_s")
  require_number("${j}" "${path}" ${path})
endforeach()
string(JSON fraction GET "${j}" masks causal visible_fraction)
expect_equal("causal visible_fraction" "${fraction}" 1.0)
string(JSON anchor_vs GET "${j}" masks anchor step_vs_causal)
if(NOT anchor_vs LESS 1)
  message(FATAL_ERROR "anchor step / causal step = ${anchor_vs}, expected < 1")
endif()

# A packed dataset gives the documents and the window length.
run_ok(s pack --input "${FIXTURES}/small_corpus.txt" --seq-len 128 --anchor-mode shared
       --out "${WORK}/ds" --quiet --json)
run_ok(j plan --preset tiny --dataset "${WORK}/ds" --gpus 2 --sp 2 --json)
string(STRIP "${j}" j)
string(JSON len GET "${j}" setup seq_len)
expect_equal("seq_len from the dataset" "${len}" 128)
expect_failure("--seq-len 256 differs from the dataset's windows of 128"
               plan --preset tiny --dataset "${WORK}/ds" --seq-len 256)

# cpu-local in bf16 times the GEMMs as train will run them: emulated on the sgemm rate, native
# on oneDNN's bf16 GEMM measured now (where this machine has it).
run_ok(j plan --preset tiny --seq-len 256 --windows 1 --hardware cpu-local --precision bf16
       --bf16-compute emulated --json)
string(JSON compute GET "${j}" setup bf16_compute)
string(JSON source GET "${j}" hardware source)
expect_equal("plan --bf16-compute emulated" "${compute}" emulated)
if(NOT source MATCHES "bf16 emulated on sgemm")
  message(FATAL_ERROR "cpu-local, emulated: the source does not say so: ${source}")
endif()
execute_process(COMMAND ${EXE} plan --preset tiny --seq-len 256 --windows 1 --hardware cpu-local
                        --precision bf16 --bf16-compute native --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE j ERROR_VARIABLE err)
if(rc EQUAL 0)
  string(JSON source GET "${j}" hardware source)
  if(NOT source MATCHES "bf16 GEMM \\(oneDNN, --bf16-compute native\\) [0-9.]+ GFLOP/s")
    message(FATAL_ERROR "cpu-local, native: no bf16 GEMM rate in the source: ${source}")
  endif()
elseif(NOT err MATCHES "--bf16-compute.*native is unavailable")
  message(FATAL_ERROR "plan --bf16-compute native: exit ${rc} without saying why:\n${err}")
endif()
expect_failure("--bf16-compute" plan --preset tiny --seq-len 64 --bf16-compute fast)

# Refusals, naming the numbers (tiny: 4 heads over 2 kv heads).
expect_failure("--sp 8 exceeds the model's 4 attention heads"
               plan --preset tiny --seq-len 256 --gpus 8 --sp 8)
expect_failure("--gpus 6 is not divisible by --sp 4" plan --preset tiny --seq-len 256 --gpus 6 --sp 4)
expect_failure("unknown model preset 'nope'" plan --preset nope --seq-len 256)
# NaN used to pass the (0, 1] check and a zero chunk the whole plan.
expect_failure("--attention-efficiency: nan does not lie in"
               plan --preset tiny --seq-len 256 --attention-efficiency nan)
expect_failure("--loss-chunk: must be at least 1" plan --preset tiny --seq-len 256 --loss-chunk 0)
expect_failure("unknown hardware profile 'tpu'.*cpu-local"
               plan --preset tiny --seq-len 256 --hardware tpu)
expect_failure("--seq-len" plan --preset tiny)
expect_failure("--preset" plan --preset tiny --model-config "${WORK}/none.json" --seq-len 64)
expect_failure("--mask" plan --preset tiny --seq-len 64 --mask nope)
expect_failure("lognormal" plan --preset tiny --seq-len 64 --docs lognormal:5)
expect_failure("--gemm-efficiency" plan --preset tiny --seq-len 64 --gemm-efficiency 1.5)
