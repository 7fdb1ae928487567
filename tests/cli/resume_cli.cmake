# `anchorctx train --resume` rules (docs/RELIABILITY.md, "Resume rules"): a change of what the
# run means is refused naming each difference (old -> new); a legitimate change is taken with
# a line saying so; --steps at or below the checkpoint's step has nothing to do; --resume on a
# folder without a checkpoint starts a new run and says so (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -DWORK=/tmp/dir -P resume_cli.cmake
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

# Runs `${EXE} ARGN`, requires exit 0 and leaves stderr in `err_var`.
function(run_ok_stderr err_var)
  execute_process(COMMAND ${EXE} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(JOIN " " args ${ARGN})
    message(FATAL_ERROR "anchorctx ${args}: exit ${rc}\nstdout:\n${out}\nstderr:\n${err}")
  endif()
  set(${err_var} "${err}" PARENT_SCOPE)
endfunction()

function(expect_match what text regex)
  if(NOT text MATCHES "${regex}")
    message(FATAL_ERROR "${what}: does not match '${regex}':\n${text}")
  endif()
endfunction()

# Two small corpora; three datasets: A, A with another seq-len, B with A's seq-len.
foreach(name a b)
  set(corpus "")
  foreach(i RANGE 1 50)
    string(APPEND corpus "{\"text\": \"corpus ${name} document ${i}: some words and more ")
    string(APPEND corpus "words, ${name}${i} ${name}${i} ${name}${i}, until it ends.\"}\n")
  endforeach()
  file(WRITE "${WORK}/${name}.jsonl" "${corpus}")
endforeach()
run_ok(p1 pack --input "${WORK}/a.jsonl" --tokenizer byte --seq-len 96 --out "${WORK}/data_a"
       --quiet)
run_ok(p2 pack --input "${WORK}/a.jsonl" --tokenizer byte --seq-len 64 --out "${WORK}/data_a64"
       --quiet)
run_ok(p3 pack --input "${WORK}/b.jsonl" --tokenizer byte --seq-len 96 --out "${WORK}/data_b"
       --quiet)

set(base --data "${WORK}/data_a" --out "${WORK}/run" --preset tiny --lr 0.002 --quiet)
run_ok(first train ${base} --steps 2)

# Refused: each difference named, old -> new; nothing written.
expect_failure("mask: anchor -> causal" train ${base} --steps 3 --resume --mask causal)
expect_failure("positions: anchor -> reset" train ${base} --steps 3 --resume --positions reset)
expect_failure("precision: bf16 -> fp32.*rope-mode: hf_bf16 -> fp32|rope-mode: hf_bf16 -> fp32.*precision: bf16 -> fp32"
               train ${base} --steps 3 --resume --precision fp32)
expect_failure("rope-mode: hf_bf16 -> exact" train ${base} --steps 3 --resume --rope-mode exact)
expect_failure("mask-doc-boundaries: false -> true" train ${base} --steps 3 --resume
               --mask-doc-boundaries)
expect_failure("grad-accum: 1 -> 2" train ${base} --steps 3 --resume --grad-accum 2)
expect_failure("dataset seq_len: 96 -> 64" train --data "${WORK}/data_a64" --out "${WORK}/run"
               --preset tiny --lr 0.002 --quiet --steps 3 --resume)
expect_failure("dataset files.tokens.bin: [0-9a-f]+ -> [0-9a-f]+" train --data "${WORK}/data_b"
               --out "${WORK}/run" --preset tiny --lr 0.002 --quiet --steps 3 --resume)
# The tiny config with a wider MLP, given as a file: the config is compared, not its source.
file(READ "${WORK}/run/checkpoints/step-000002/config.json" config)
string(JSON width GET "${config}" intermediate_size)
math(EXPR wider "${width} + 32")
string(JSON config SET "${config}" intermediate_size "${wider}")
file(WRITE "${WORK}/wider.json" "${config}")
expect_failure("model intermediate_size: ${width} -> ${wider}" train --data "${WORK}/data_a"
               --out "${WORK}/run" --model-config "${WORK}/wider.json" --lr 0.002 --quiet
               --steps 3 --resume)
if(EXISTS "${WORK}/run/checkpoints/step-000003")
  message(FATAL_ERROR "a refused resume wrote a checkpoint")
endif()

# Allowed: more steps, another lr and cadence, threads, the dataset at another path (same
# content); each change reported.
file(COPY "${WORK}/data_a/" DESTINATION "${WORK}/moved/data_a")
run_ok_stderr(err train --data "${WORK}/moved/data_a" --out "${WORK}/run" --preset tiny --quiet
              --resume --steps 4 --lr 0.001 --save-every 1 --log-every 2 --threads 1)
expect_match("allowed changes" "${err}" "steps: 2 -> 4")
expect_match("allowed changes" "${err}" "lr: 0.002 -> 0.001")
expect_match("allowed changes" "${err}" "save-every: 0 -> 1")
expect_match("allowed changes" "${err}" "data: .*data_a -> .*moved/data_a")
if(NOT EXISTS "${WORK}/run/checkpoints/step-000004/trainer_state.json")
  message(FATAL_ERROR "the allowed resume did not reach step 4")
endif()

# Nothing to do: --steps at or below the checkpoint's step; exit 0, nothing written.
file(SHA256 "${WORK}/run/metrics.jsonl" metrics_before)
set(now --data "${WORK}/data_a" --out "${WORK}/run" --preset tiny --lr 0.001 --save-every 1
    --log-every 2 --quiet --resume)
foreach(steps 4 3)
  run_ok_stderr(err train ${now} --steps ${steps})
  expect_match("--steps ${steps} at step 4" "${err}" "nothing to do")
endforeach()
run_ok(done train ${now} --steps 4 --json)
string(JSON steps GET "${done}" steps)
expect_equal("steps of a resume with nothing to do" "${steps}" "4")
string(JSON nothing GET "${done}" nothing_to_do)
expect_equal("nothing_to_do" "${nothing}" "ON")
file(SHA256 "${WORK}/run/metrics.jsonl" metrics_after)
expect_equal("metrics.jsonl after nothing to do" "${metrics_after}" "${metrics_before}")

# No checkpoint: --resume starts a new run and says so.
file(MAKE_DIRECTORY "${WORK}/empty")
run_ok_stderr(err train --data "${WORK}/data_a" --out "${WORK}/empty" --preset tiny --quiet
              --steps 1 --resume)
expect_match("--resume without a checkpoint" "${err}" "no checkpoint in .*starting a new run")
if(NOT EXISTS "${WORK}/empty/checkpoints/step-000001/trainer_state.json")
  message(FATAL_ERROR "--resume without a checkpoint did not train")
endif()

# A damaged trainer_state.json is refused naming the file and the key, before any step; each
# case on a copy of the run (its newest checkpoint is step 4).
set(state_rel checkpoints/step-000004/trainer_state.json)
file(READ "${WORK}/run/${state_rel}" state)
# Runs a resume of a copy of the run whose newest trainer_state.json is `text`; expects `regex`.
function(expect_state_refused text regex)
  file(REMOVE_RECURSE "${WORK}/edited")
  file(COPY "${WORK}/run/" DESTINATION "${WORK}/edited")
  file(WRITE "${WORK}/edited/${state_rel}" "${text}")
  expect_failure("${regex}" train --data "${ARGN}" --out "${WORK}/edited" --preset tiny --lr 0.001
                 --save-every 1 --log-every 2 --quiet --resume --steps 6)
  if(EXISTS "${WORK}/edited/checkpoints/step-000005")
    message(FATAL_ERROR "a refused resume trained a step")
  endif()
endfunction()
# Counters a resume increments: INT64_MAX overflowed (undefined behaviour) after a step.
foreach(key optimizer_steps tokens_seen)
  string(JSON edited SET "${state}" ${key} 9223372036854775807)
  expect_state_refused("${edited}" "trainer_state.json: key '${key}': 9223372036854775807 is outside"
                       "${WORK}/data_a")
endforeach()
# Another type where --resume compares made it skip the check: another dataset, another seed.
string(JSON edited SET "${state}" dataset "\"x\"")
expect_state_refused("${edited}" "trainer_state.json: key 'dataset': expected an object"
                     "${WORK}/data_b")
string(JSON edited SET "${state}" options "[]")
expect_state_refused("${edited}" "trainer_state.json: key 'options': expected an object"
                     "${WORK}/data_a")
string(JSON edited REMOVE "${state}" options seed)
expect_state_refused("${edited}" "seed: \\(not recorded\\) -> 0" "${WORK}/data_a")
string(JSON edited SET "${state}" step 0)
expect_state_refused("${edited}" "key 'step': 0, but the folder is named for step 4"
                     "${WORK}/data_a")
string(REPEAT "[" 600 open)
string(REPEAT "]" 600 close)
string(REPLACE "\"options\": {" "\"options\": {\"deep\": ${open}${close}, " edited "${state}")
expect_state_refused("${edited}" "trainer_state.json: JSON nested deeper than 512" "${WORK}/data_a")
# The newest checkpoint without its trainer_state.json is damage: refused, not passed over for
# step 3.
file(REMOVE_RECURSE "${WORK}/edited")
file(COPY "${WORK}/run/" DESTINATION "${WORK}/edited")
file(REMOVE "${WORK}/edited/${state_rel}")
expect_failure("step-000004 is not a complete checkpoint \\(it has no trainer_state.json\\).*continues from step-000003"
               train --data "${WORK}/data_a" --out "${WORK}/edited" --preset tiny --lr 0.001
               --save-every 1 --log-every 2 --quiet --resume --steps 6)
