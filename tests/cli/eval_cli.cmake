# `anchorctx eval` end to end on a model from `anchorctx demo` (a few steps): ppl and two needle
# tasks at two lengths, the report folder, and the refusals before any work (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -DWORK=/tmp/dir -DFIXTURES=tests/data/fixtures -P eval_cli.cmake
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE WORK FIXTURES)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

run_ok(demo demo --steps 2 --documents 100 --seq-len 128 --out "${WORK}/demo" --quiet)
set(model "${WORK}/demo/model")

run_ok(out eval --model "${model}" --tasks ppl,niah_single_1,niah_multikey_1 --lengths 512,768
       --samples 2 --template-set kv --json --quiet --out "${WORK}/report")
string(JSON n LENGTH "${out}" niah)
expect_equal("niah cells (2 tasks x 2 lengths)" "${n}" "4")
string(JSON n LENGTH "${out}" niah 0 samples)
expect_equal("samples per cell" "${n}" "2")
string(JSON n LENGTH "${out}" ppl)
expect_equal("ppl lengths" "${n}" "2")
string(JSON n LENGTH "${out}" ppl 1 buckets)
expect_equal("ppl buckets at 768 (0-128, 128-256, 256-512, 512-768)" "${n}" "4")
string(JSON tokens GET "${out}" ppl 0 tokens)
expect_equal("ppl tokens at 512 (2 windows)" "${tokens}" "1024")
foreach(f report.json report.md accuracy_vs_length.svg accuracy_vs_length.png ppl_by_position.svg
          ppl_by_position.png niah_heatmap.svg niah_heatmap.png)
  if(NOT EXISTS "${WORK}/report/${f}")
    message(FATAL_ERROR "the report folder lacks ${f}")
  endif()
endforeach()

# Refusals, each before the weights are read.
expect_failure("unknown task 'niah_single_9'" eval --model "${model}" --tasks niah_single_9)
expect_failure("--lengths: 777 is listed twice" eval --model "${model}" --tasks ppl --lengths 777,512,777)
expect_failure("--lengths: an empty item in '512,,768'" eval --model "${model}" --tasks ppl
               --lengths 512,,768)
expect_failure("--tasks: an empty item in 'ppl,'" eval --model "${model}" --tasks ppl,)
expect_failure("beyond the model's max_position_embeddings" eval --model "${model}"
               --tasks ppl --lengths 100000)
file(WRITE "${WORK}/bad.json" "{\"mine\": {\"task\": \"{context}\", \"needle\": \"{key} {value}\", \"noise\": \"A. \"}}")
expect_failure("lacks the placeholder [{]query[}]" eval --model "${model}" --templates
               "${WORK}/bad.json" --template-set mine --tasks niah_single_1)
expect_failure("no template set 'nope'" eval --model "${model}" --template-set nope
               --tasks niah_single_1)
expect_failure("more than the model's vocab_size" eval --model "${model}" --tokenizer
               "${FIXTURES}/hf_bpe_gpt2ish.json" --tasks ppl)

# The report records how bf16 was computed (null in fp32); an unknown value is refused.
string(JSON type TYPE "${out}" bf16_compute)
expect_equal("fp32 run's bf16_compute" "${type}" "NULL")
run_ok(out3 eval --model "${model}" --tasks ppl --lengths 512 --samples 1 --precision bf16
       --bf16-compute emulated --json --quiet)
string(JSON compute GET "${out3}" bf16_compute)
expect_equal("bf16 emulated run's bf16_compute" "${compute}" "emulated")
expect_failure("expected native or emulated" eval --model "${model}" --tasks ppl --precision bf16
               --bf16-compute fast)

# vt, cwe and fwe (RULER's wording): one sample each; no needle task, so no heatmap.
run_ok(out2 eval --model "${model}" --tasks vt,cwe,fwe --lengths 2500 --samples 1 --json --quiet
       --out "${WORK}/report2")
string(JSON n LENGTH "${out2}" niah)
expect_equal("vt, cwe, fwe cells" "${n}" "3")
string(JSON task GET "${out2}" niah 2 task)
expect_equal("third cell" "${task}" "fwe")
if(EXISTS "${WORK}/report2/niah_heatmap.svg")
  message(FATAL_ERROR "a heatmap was drawn for tasks without depths")
endif()
expect_failure("has no 'vt' template" eval --model "${model}" --template-set kv --tasks vt
               --lengths 2500)

# --compare: a report against itself (paired, zero differences), and the refusals.
run_ok(cmp eval --compare "${WORK}/report" "${WORK}/report/report.json" --json --out "${WORK}/cmp")
string(JSON n LENGTH "${cmp}" rows)
expect_equal("compare rows (2 tasks x 2 lengths + 2 ppl lengths)" "${n}" "6")
string(JSON paired GET "${cmp}" rows 0 runs 1 paired)
expect_equal("paired" "${paired}" "ON")
foreach(f compare.json compare.md compare_accuracy_vs_length.svg compare_accuracy_vs_length.png)
  if(NOT EXISTS "${WORK}/cmp/${f}")
    message(FATAL_ERROR "the compare folder lacks ${f}")
  endif()
endforeach()
expect_failure("share no" eval --compare "${WORK}/report" "${WORK}/report2")
expect_failure("cannot read" eval --compare "${WORK}/report" "${WORK}/missing")

# ppl windows are cut at max(lengths) + 1 tokens: a run with --lengths 512 scores other text at
# 512 than one with 512,768, so compare must not pair them (it did, with a standard error ~9x too
# small); the same ppl settings again are the same windows: paired.
run_ok(short eval --model "${model}" --tasks ppl --lengths 512 --samples 2 --json --quiet
       --out "${WORK}/short")
string(JSON window GET "${short}" ppl_window_tokens)
expect_equal("ppl_window_tokens at --lengths 512" "${window}" "513")
string(JSON window GET "${out}" ppl_window_tokens)
expect_equal("ppl_window_tokens at --lengths 512,768" "${window}" "769")
run_ok(cmp eval --compare "${WORK}/report" "${WORK}/short" --json)
string(JSON task GET "${cmp}" rows 4 task)
string(JSON length GET "${cmp}" rows 4 length)
expect_equal("row 4" "${task} ${length}" "ppl 512")
string(JSON paired GET "${cmp}" rows 4 runs 1 paired)
expect_equal("ppl 512 between --lengths 512,768 and 512 paired" "${paired}" "OFF")
run_ok(again eval --model "${model}" --tasks ppl --lengths 512,768 --samples 2 --quiet
       --out "${WORK}/again")
run_ok(cmp eval --compare "${WORK}/report" "${WORK}/again" --json)
string(JSON paired GET "${cmp}" rows 4 runs 1 paired)
expect_equal("ppl 512 between two runs with the same settings paired" "${paired}" "ON")
# A cell the first run lacks: a '-' on stdout as in compare.md, not '+nan +- nan'.
run_ok(table eval --compare "${WORK}/short" "${WORK}/again")
if(table MATCHES "nan" OR NOT table MATCHES "ppl +768 +- +[0-9.]+ \\(-\\)")
  message(FATAL_ERROR "--compare's table for a cell missing from the first run:\n${table}")
endif()

# Fewer ppl windows than --samples: scored, said on stderr, and the count is in the report.
string(REPEAT "Once upon a time there was a small dog. " 30 text)
file(WRITE "${WORK}/small.txt" "${text}")
execute_process(COMMAND ${EXE} eval --model "${model}" --tasks ppl --lengths 256 --samples 10
                --data "${WORK}/small.txt" --quiet --out "${WORK}/small"
                RESULT_VARIABLE rc OUTPUT_VARIABLE ignored ERROR_VARIABLE err)
expect_equal("eval on data for fewer windows than --samples: exit" "${rc}" "0")
if(NOT err MATCHES "warning: ppl: the data [(].*small.txt[)] holds ([0-9]+) windows of 257 tokens, fewer than --samples 10")
  message(FATAL_ERROR "no warning about the windows scored:\n${err}")
endif()
set(windows "${CMAKE_MATCH_1}")
file(READ "${WORK}/small/report.json" small)
string(JSON n GET "${small}" ppl 0 windows)
expect_equal("report.json's ppl windows" "${n}" "${windows}")
string(JSON n LENGTH "${small}" ppl 0 sample_loss)
expect_equal("per-window losses" "${n}" "${windows}")
file(READ "${WORK}/small/report.md" md)
if(NOT md MATCHES "10 samples per cell [(]ppl: ${windows} windows, all the data holds[)]")
  message(FATAL_ERROR "report.md does not give the windows scored:\n${md}")
endif()
