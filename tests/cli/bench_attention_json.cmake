# `anchorctx bench attention --json` end to end, on small shapes (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -P bench_attention_json.cmake
# Each run must exit 0 and print one JSON object on stdout holding the documented keys; bad
# option values must fail with a nonzero exit and a message on stderr.
cmake_minimum_required(VERSION 3.25)
if(NOT EXE)
  message(FATAL_ERROR "pass -DEXE=/path/to/anchorctx")
endif()

set(REQUIRED_KEYS fwd_ms bwd_ms fwd_gflops bwd_gflops visible_fraction visible_pairs
    causal_pairs sgemm_gflops isa threads plan seq_len batch heads kv_heads head_dim mask docs
    anchor_len seed dtype repeat warmup_ms tile cpu backward_schedule)
set(SMALL --seq-len 512 --heads 2 --head-dim 64 --repeat 1 --json)

include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)

# Runs the bench with ARGN, requires success, and leaves the parsed JSON text in `out_var`.
function(run_json out_var)
  string(JOIN " " args ${ARGN})
  # No time-based warm-up (one untimed run still happens): these are checks, not timings.
  execute_process(COMMAND ${EXE} bench attention --warmup-ms 0 ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "bench attention ${args}: exit ${rc}\nstderr:\n${err}")
  endif()
  string(STRIP "${out}" out)
  string(JSON type ERROR_VARIABLE json_error TYPE "${out}")
  if(json_error OR NOT type STREQUAL "OBJECT")
    message(FATAL_ERROR "bench attention ${args}: stdout is not one JSON object "
                        "(${json_error}):\n${out}")
  endif()
  foreach(key IN LISTS REQUIRED_KEYS)
    string(JSON value ERROR_VARIABLE key_error GET "${out}" ${key})
    if(key_error)
      message(FATAL_ERROR "bench attention ${args}: key '${key}' missing:\n${out}")
    endif()
  endforeach()
  foreach(key fwd_ms bwd_ms fwd_gflops bwd_gflops sgemm_gflops)
    string(JSON type TYPE "${out}" ${key})
    if(type STREQUAL "NULL" AND key MATCHES "^bwd_" AND "--no-backward" IN_LIST ARGN)
      continue()  # a skipped backward reports null
    endif()
    string(JSON value GET "${out}" ${key})
    if(NOT type STREQUAL "NUMBER" OR NOT value GREATER 0)
      message(FATAL_ERROR "bench attention ${args}: ${key} = ${value}, expected > 0")
    endif()
  endforeach()
  string(JSON fraction GET "${out}" visible_fraction)
  if(fraction LESS_EQUAL 0 OR fraction GREATER 1)
    message(FATAL_ERROR "bench attention ${args}: visible_fraction ${fraction} not in (0, 1]")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

# Requires `key` of `json` to equal `want`.
function(expect_key json key want)
  string(JSON got GET "${json}" ${key})
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "${key} = '${got}', expected '${want}'")
  endif()
endfunction()

run_json(j ${SMALL})
expect_key("${j}" mask anchor)
expect_key("${j}" anchor_len 1)
expect_key("${j}" dtype fp32)
expect_key("${j}" kv_heads 2)
string(JSON tiles GET "${j}" plan visited_pairs)
if(NOT tiles GREATER 0)
  message(FATAL_ERROR "plan.visited_pairs = ${tiles}")
endif()

run_json(j ${SMALL} --dtype bf16 --mask causal --threads 1)
expect_key("${j}" backward_schedule fused)
expect_key("${j}" dtype bf16)
expect_key("${j}" mask causal)
expect_key("${j}" anchor_len 0)
string(JSON fraction GET "${j}" visible_fraction)
if(NOT fraction EQUAL 1)
  message(FATAL_ERROR "causal: visible_fraction ${fraction}, expected 1")
endif()
expect_key("${j}" threads 1)
# bf16 tensors: the default is native where the CPU has AVX512_BF16 (reported as the
# avx512_bf16 kernels, or amx_bf16 where the CPU has AMX-BF16), and emulated is always there.
set(native_isas "^(avx512_bf16|amx_bf16)$")
string(JSON compute GET "${j}" bf16_compute)
string(JSON isa GET "${j}" isa)
if(compute STREQUAL "native")
  if(NOT isa MATCHES "${native_isas}")
    message(FATAL_ERROR "bf16_compute native but isa '${isa}'")
  endif()
elseif(NOT compute STREQUAL "emulated" OR isa MATCHES "${native_isas}")
  message(FATAL_ERROR "bf16_compute '${compute}', isa '${isa}'")
endif()
set(default_compute "${compute}")
run_json(j ${SMALL} --dtype bf16 --bf16-compute emulated)
expect_key("${j}" bf16_compute emulated)
string(JSON isa GET "${j}" isa)
if(isa MATCHES "${native_isas}")
  message(FATAL_ERROR "--bf16-compute emulated ran the native kernels")
endif()
if(default_compute STREQUAL "native")
  run_json(j ${SMALL} --dtype bf16 --bf16-compute native)
  string(JSON isa GET "${j}" isa)
  if(NOT isa MATCHES "${native_isas}")
    message(FATAL_ERROR "--bf16-compute native ran '${isa}'")
  endif()
  # ANCHORCTX_AMX=off keeps the native products on vdpbf16ps.
  execute_process(COMMAND ${CMAKE_COMMAND} -E env ANCHORCTX_AMX=off ${EXE} bench attention
                          ${SMALL} --warmup-ms 0 --dtype bf16 --bf16-compute native
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(JSON isa GET "${out}" isa)
  if(NOT rc EQUAL 0 OR NOT isa STREQUAL "avx512_bf16")
    message(FATAL_ERROR "ANCHORCTX_AMX=off: exit ${rc}, isa '${isa}'\n${err}")
  endif()
endif()
# Lowered below avx512, native is refused by name, and the default falls back to emulated.
execute_process(COMMAND ${CMAKE_COMMAND} -E env ANCHORCTX_ISA=avx2 ${EXE} bench attention
                        --seq-len 64 --repeat 1 --warmup-ms 0 --dtype bf16 --bf16-compute native
                        --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "--bf16-compute.*native is unavailable")
  message(FATAL_ERROR "native below avx512: exit ${rc}, stderr:\n${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E env ANCHORCTX_ISA=avx2 ${EXE} bench attention
                        --seq-len 64 --repeat 1 --warmup-ms 0 --dtype bf16 --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(JSON compute GET "${out}" bf16_compute)
if(NOT rc EQUAL 0 OR NOT compute STREQUAL "emulated")
  message(FATAL_ERROR "default below avx512: exit ${rc}, bf16_compute '${compute}'\n${err}")
endif()
run_json(j ${SMALL})
string(JSON type TYPE "${j}" bf16_compute)
if(NOT type STREQUAL "NULL")
  message(FATAL_ERROR "fp32: bf16_compute is ${type}, expected null")
endif()

# Short documents, GQA, two sequences: intra_doc sees a small part of the causal pairs. The
# documents are saved, and the same file read back gives the same layout.
set(docs_file "${CMAKE_CURRENT_BINARY_DIR}/bench_attention_docs.txt")
run_json(j ${SMALL} --heads 4 --kv-heads 2 --batch 2 --mask intra_doc --docs fixed:64
         --no-backward --save-docs "${docs_file}")
string(JSON type TYPE "${j}" bwd_ms)
if(NOT type STREQUAL "NULL")
  message(FATAL_ERROR "--no-backward: bwd_ms is ${type}, expected null")
endif()
string(JSON fraction GET "${j}" visible_fraction)
if(fraction GREATER 0.2)
  message(FATAL_ERROR "intra_doc with 64-token documents: visible_fraction ${fraction}")
endif()
string(JSON pairs GET "${j}" visible_pairs)
file(READ "${docs_file}" saved)
string(REPLACE "\n" ";" saved_lines "${saved}")
list(FILTER saved_lines EXCLUDE REGEX "^$")
list(LENGTH saved_lines saved_docs)
if(NOT saved_docs EQUAL 16)
  message(FATAL_ERROR "--save-docs: ${saved_docs} document lengths, expected 16:\n${saved}")
endif()
if(NOT saved MATCHES "64\n\n64")
  message(FATAL_ERROR "--save-docs: no blank line between the sequences:\n${saved}")
endif()
run_json(j ${SMALL} --heads 4 --kv-heads 2 --batch 2 --mask intra_doc --docs "file:${docs_file}")
expect_key("${j}" visible_pairs ${pairs})

# One sequence and one kv head on 3 threads: key tiles in turn (attention::backward_schedule).
run_json(j ${SMALL} --kv-heads 1 --threads 3)
expect_key("${j}" backward_schedule key_tiles_in_turn)

# The bench on a tiny shape with ARGN must fail with a message matching `regex`.
function(expect_bench_failure regex)
  expect_failure("${regex}" bench attention --seq-len 64 --repeat 1 ${ARGN})
endfunction()

expect_bench_failure("anchorctx: error: .*--mask" --mask nope --json)
expect_bench_failure("anchorctx: error: .*fixed:0" --docs fixed:0 --json)
expect_bench_failure("anchorctx: error: .*lognormal" --docs lognormal:1024 --json)
expect_bench_failure("anchorctx: error: .*--kv-heads" --heads 3 --kv-heads 2 --json)
expect_bench_failure("anchorctx: error: .*--dtype" --dtype fp16)
expect_bench_failure("anchorctx: error: .*--bf16-compute" --dtype bf16 --bf16-compute fast)
expect_bench_failure("anchorctx: error: .*--warmup-ms" --warmup-ms -1 --json)
expect_bench_failure("anchorctx: error" --no-such-option)
set(bad_file "${CMAKE_CURRENT_BINARY_DIR}/bench_attention_bad_docs.txt")
file(WRITE "${bad_file}" "100\n200\n2x0\n")
expect_bench_failure("bench_attention_bad_docs.txt.* line 3" --docs "file:${bad_file}")
expect_bench_failure("anchorctx: error: .*cannot open" --docs "file:${bad_file}.missing")
