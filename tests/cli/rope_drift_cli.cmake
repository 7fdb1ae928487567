# `anchorctx rope-drift --quick --json` on a model trained by `anchorctx demo` (a few steps), the
# report folder, and the refusals (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -DWORK=/tmp/dir -P rope_drift_cli.cmake
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

run_ok(demo demo --steps 2 --documents 100 --seq-len 128 --out "${WORK}/demo" --quiet)
set(model "${WORK}/demo/model")

run_ok(out rope-drift --model "${model}" --quick --json --out "${WORK}/report")
foreach(key results logit_growth first_token_share seq_len sequences)
  string(JSON value ERROR_VARIABLE missing GET "${out}" ${key})
  if(missing)
    message(FATAL_ERROR "rope-drift --json lacks '${key}':\n${out}")
  endif()
endforeach()
string(JSON n LENGTH "${out}" results)
expect_equal("results (3 modes x 2 policies x 5 deltas)" "${n}" "30")
foreach(key mode policy delta1 delta2 D D_excl_first)
  string(JSON value ERROR_VARIABLE missing GET "${out}" results 0 ${key})
  if(missing)
    message(FATAL_ERROR "results[0] lacks '${key}':\n${out}")
  endif()
endforeach()
foreach(key mode policy T D_logit)
  string(JSON value ERROR_VARIABLE missing GET "${out}" logit_growth 0 ${key})
  if(missing)
    message(FATAL_ERROR "logit_growth[0] lacks '${key}':\n${out}")
  endif()
endforeach()
foreach(f report.json report.md d_vs_delta.svg per_token.svg d_logit.svg d_vs_delta.png
          per_token.png d_logit.png)
  if(NOT EXISTS "${WORK}/report/${f}")
    message(FATAL_ERROR "the report folder lacks ${f}")
  endif()
endforeach()

# --quick keeps an explicit --seq-len and --sequences (it only fills in what is not given).
run_ok(out rope-drift --model "${model}" --quick --seq-len 128 --sequences 2 --json)
string(JSON got GET "${out}" seq_len)
expect_equal("--quick with --seq-len 128" "${got}" "128")
string(JSON got GET "${out}" sequences)
expect_equal("--quick with --sequences 2" "${got}" "2")

# The other inputs: a text file, a JSONL file and a packed dataset (seq_len and the number of
# sequences come back as asked).
string(REPEAT "The little cat sat on the warm mat and looked at the big red ball. " 12 story)
file(WRITE "${WORK}/story.txt" "${story}")
file(WRITE "${WORK}/stories.jsonl" "{\"text\": \"${story}\"}\n{\"text\": \"${story}\"}\n")
run_ok(out rope-drift --model "${model}" --input "${WORK}/story.txt" --seq-len 128
       --sequences 3 --deltas 0,4 --json)
string(JSON got GET "${out}" sequences)
expect_equal("sequences from a text file" "${got}" "3")
string(JSON got GET "${out}" seq_len)
expect_equal("seq_len from a text file" "${got}" "128")
run_ok(out rope-drift --model "${model}" --input "${WORK}/stories.jsonl" --seq-len 128
       --sequences 6 --deltas 0,4 --json)
string(JSON got GET "${out}" sequences)
expect_equal("sequences from a JSONL file" "${got}" "6")
run_ok(packed pack --input "${WORK}/story.txt" --seq-len 128 --out "${WORK}/packed" --quiet)
run_ok(out rope-drift --model "${model}" --dataset "${WORK}/packed" --seq-len 128 --sequences 2
       --deltas 0,4 --json)
string(JSON got GET "${out}" sequences)
expect_equal("sequences from a packed dataset" "${got}" "2")
expect_failure("shorter than --seq-len" rope-drift --model "${model}" --dataset "${WORK}/packed"
               --seq-len 200 --deltas 0)
expect_failure("windows" rope-drift --model "${model}" --dataset "${WORK}/packed" --seq-len 128
               --sequences 100 --deltas 0)

# Refusals: beyond the model's context, too little input, a bad mode, a missing folder.
expect_failure("--allow-long" rope-drift --model "${model}" --seq-len 8192 --deltas 0)
file(WRITE "${WORK}/short.txt" "a few words only")
expect_failure("1 sequences|0 sequences" rope-drift --model "${model}" --input "${WORK}/short.txt"
               --seq-len 256 --deltas 0)
expect_failure("unknown mode" rope-drift --model "${model}" --quick --modes fp32,bf16)
expect_failure("config" rope-drift --model "${WORK}/nothing" --quick)
message(STATUS "rope-drift CLI: ok")
