# `anchorctx convert llama2c` then `anchorctx generate` on the real stories260K model (run by
# CTest): greedy decoding from bos must print exactly the text llama2.c's own tests expect.
#   cmake -DEXE=/path/to/anchorctx -DDATA=/path/to/shared/data -DWORK=/tmp/dir -P generate_cli.cmake
# Skips (CTest's SKIP_REGULAR_EXPRESSION "skipped:") when ../shared/data is absent.
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE DATA WORK)

stories260k_or_skip()

# Runs `anchorctx ARGN`, requires exit `want_rc`, and leaves stdout (exact, not stripped) in
# `out_var` and stderr in `${out_var}_err`.
function(run_exe out_var want_rc)
  execute_process(COMMAND ${EXE} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL want_rc)
    string(JOIN " " args ${ARGN})
    message(FATAL_ERROR "anchorctx ${args}: exit ${rc}, expected ${want_rc}\n"
                        "stdout:\n${out}\nstderr:\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
  set(${out_var}_err "${err}" PARENT_SCOPE)
endfunction()

# Runs `anchorctx generate --model MODEL --prompt PROMPT ARGN` like run_exe. The prompt is its own
# quoted argument because CMake drops empty elements from a list such as ${ARGN}.
function(run_generate out_var want_rc model prompt)
  execute_process(COMMAND ${EXE} generate --model "${model}" --prompt "${prompt}" ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL want_rc)
    string(JOIN " " args ${ARGN})
    message(FATAL_ERROR "anchorctx generate --prompt '${prompt}' ${args}: exit ${rc}, expected "
                        "${want_rc}\nstdout:\n${out}\nstderr:\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
  set(${out_var}_err "${err}" PARENT_SCOPE)
endfunction()

# llama2.c's test: `run stories260K.bin -z tok512.bin -t 0.0 -n 200` (../shared/data/README.md).
set(expected [=[
Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily's mom said, "Lily, let's go to the park." Lily was sad and didn't know what to do. She said, "I want to play with your ball, but I can't find it."
Lily was sad and didn't know what to do. She said, "I'm sorry, Lily. I didn't know what to do."
Lily didn't want to help her mom, so she]=])

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(model "${WORK}/stories260K")
run_exe(out 0 convert llama2c --checkpoint "${checkpoint}" --tokenizer "${tokenizer}"
        --out "${model}" --json)
string(JSON params GET "${out}" parameters)
expect_equal("convert --json parameters" "${params}" "260032")
foreach(file config.json model.safetensors tokenizer.bin)
  if(NOT EXISTS "${model}/${file}")
    message(FATAL_ERROR "convert: ${model}/${file} is missing")
  endif()
endforeach()

run_generate(out 0 "${model}" "" --temperature 0 --max-new-tokens 200)
expect_equal("greedy text" "${out}" "${expected}")

run_generate(out 0 "${model}" "" --temperature 0 --max-new-tokens 200 --json)
string(JSON text GET "${out}" text)
expect_equal("--json text" "${text}" "${expected}")
string(JSON n LENGTH "${out}" tokens)
expect_equal("--json tokens" "${n}" "200")
string(JSON stop GET "${out}" stop)
expect_equal("--json stop" "${stop}" "max_new_tokens")

# A prompt is continued, not repeated: the greedy text from bos starts with the prompt's words.
run_generate(out 0 "${model}" "Once upon a time," --temperature 0 --max-new-tokens 10)
if(NOT out MATCHES "^ there was a little girl")
  message(FATAL_ERROR "continuation of a prompt: got '${out}'")
endif()

# Sampling is reproducible with a seed.
run_generate(a 0 "${model}" "" --seed 42 --max-new-tokens 40)
run_generate(b 0 "${model}" "" --seed 42 --max-new-tokens 40)
expect_equal("seeded sampling" "${a}" "${b}")

# Failures: an existing --out and a missing model are errors (1); a bad option is a usage error (2).
run_exe(out 1 convert llama2c --checkpoint "${checkpoint}" --tokenizer "${tokenizer}"
        --out "${model}")
run_exe(out 1 convert llama2c --checkpoint "${tokenizer}" --tokenizer "${tokenizer}"
        --out "${WORK}/bad")
if(NOT out_err MATCHES "anchorctx: error: llama2.c checkpoint")
  message(FATAL_ERROR "a tokenizer given as checkpoint: unexpected stderr:\n${out_err}")
endif()
run_generate(out 1 "${WORK}/no-such-model" "")
if(NOT out_err MATCHES "--model '[^']*no-such-model': no such model folder")
  message(FATAL_ERROR "a missing model folder: unexpected stderr:\n${out_err}")
endif()

# The largest --max-new-tokens of the documented range: the KV cache is capped at the model's
# context (512 tokens), where generation stops; it used to be sized for 2^30 tokens.
run_generate(out 0 "${model}" "" --temperature 0 --max-new-tokens 1073741824 --json)
string(JSON stop GET "${out}" stop)
expect_equal("--max-new-tokens 2^30 stop" "${stop}" "context")

# A FIFO in place of model.safetensors is refused by name; it used to block open(2) forever.
file(MAKE_DIRECTORY "${WORK}/fifo-model")
file(COPY "${model}/config.json" "${model}/tokenizer.bin" DESTINATION "${WORK}/fifo-model")
execute_process(COMMAND mkfifo "${WORK}/fifo-model/model.safetensors" RESULT_VARIABLE rc)
if(rc EQUAL 0)
  execute_process(COMMAND ${EXE} generate --model "${WORK}/fifo-model" --prompt hi
                  TIMEOUT 60 RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 1 OR NOT err MATCHES "model.safetensors: not a regular file \\(a FIFO\\)")
    message(FATAL_ERROR "a FIFO model.safetensors: exit ${rc}\n${err}")
  endif()
endif()
run_generate(out 2 "${model}" "" --top-p 1.5)
run_generate(out 2 "${model}" "" --top-p 0)  # (0, 1]: a usage error, before the model loads
run_exe(out 2 convert llama2c --checkpoint "${checkpoint}")
# A folder without a tokenizer file whose vocabulary is not the byte tokenizer's is refused by
# eval and rope-drift: they read its ids as bytes, said only by a note.
file(MAKE_DIRECTORY "${WORK}/no-tokenizer")
file(COPY "${model}/config.json" "${model}/model.safetensors" DESTINATION "${WORK}/no-tokenizer")
foreach(command "eval;--tasks;ppl;--lengths;64;--samples;1" "rope-drift;--quick")
  run_exe(out 1 ${command} --model "${WORK}/no-tokenizer")
  if(NOT out_err MATCHES "holds no tokenizer file .* and its vocabulary of 512 is not the byte")
    message(FATAL_ERROR "${command} on a folder without a tokenizer:\n${out_err}")
  endif()
endforeach()

# A tokenizer with fewer tokens than the model's vocab_size (here the byte tokenizer for a
# 512-token model): an id past its last token prints nothing, as transformers' decode skips it,
# is said once on stderr, and still counts as generated.
run_generate(out 0 "${model}" "" --tokenizer byte --temperature 0 --max-new-tokens 30 --json)
string(JSON n LENGTH "${out}" tokens)
expect_equal("ids generated with a smaller tokenizer" "${n}" "30")
string(REGEX MATCHALL "has no text for" warnings "${out_err}")
list(LENGTH warnings n)
expect_equal("warnings about ids without text" "${n}" "1")

# generation_config.json's eos ids stop generation too (Llama-3-Instruct's end of turn is only
# there): its first greedy token made an eos there stops before it. --prompt-file is the prompt's
# bytes as they are: the same ids as --prompt with the same text.
run_generate(out 0 "${model}" "Once" --temperature 0 --max-new-tokens 3 --json)
string(JSON first GET "${out}" tokens 0)
file(MAKE_DIRECTORY "${WORK}/genconfig")
file(COPY "${model}/config.json" "${model}/model.safetensors" "${model}/tokenizer.bin"
     DESTINATION "${WORK}/genconfig")
file(WRITE "${WORK}/genconfig/generation_config.json" "{\"eos_token_id\": [2, ${first}]}")
run_generate(out 0 "${WORK}/genconfig" "Once" --temperature 0 --max-new-tokens 3 --json)
string(JSON stop GET "${out}" stop)
expect_equal("stop at generation_config.json's eos" "${stop}" "eos")
file(WRITE "${WORK}/prompt.txt" "Once")
execute_process(COMMAND ${EXE} generate --model "${model}" --prompt-file "${WORK}/prompt.txt"
                        --temperature 0 --max-new-tokens 3 --json
                RESULT_VARIABLE rc OUTPUT_VARIABLE from_file ERROR_VARIABLE err)
run_generate(out 0 "${model}" "Once" --temperature 0 --max-new-tokens 3 --json)
string(JSON a GET "${from_file}" tokens)
string(JSON b GET "${out}" tokens)
expect_equal("--prompt-file tokens" "${a}" "${b}")

file(REMOVE_RECURSE "${WORK}")

