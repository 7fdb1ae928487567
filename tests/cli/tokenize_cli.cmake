# `anchorctx tokenize` end to end (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -P tokenize_cli.cmake
# The byte tokenizer needs no file, so this runs everywhere.
cmake_minimum_required(VERSION 3.25)
if(NOT EXE)
  message(FATAL_ERROR "pass -DEXE=/path/to/anchorctx")
endif()

include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)

# Runs `anchorctx tokenize ARGN`, requires exit `want_rc`, and leaves stdout (stripped) in
# `out_var` and stderr in `${out_var}_err`.
function(run_tokenize out_var want_rc)
  execute_process(COMMAND ${EXE} tokenize ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL want_rc)
    string(JOIN " " args ${ARGN})
    message(FATAL_ERROR "tokenize ${args}: exit ${rc}, expected ${want_rc}\n"
                        "stdout:\n${out}\nstderr:\n${err}")
  endif()
  string(STRIP "${out}" out)
  set(${out_var} "${out}" PARENT_SCOPE)
  set(${out_var}_err "${err}" PARENT_SCOPE)
endfunction()

run_tokenize(out 0 --tokenizer byte --text "hi" --json)
expect_equal("--json" "${out}" [[{"ids":[256,104,105]}]])

run_tokenize(out 0 --tokenizer byte --text "hi")
expect_equal("plain ids" "${out}" "256 104 105")

run_tokenize(out 0 --tokenizer byte --text "hi" --no-bos)
expect_equal("--no-bos" "${out}" "104 105")

run_tokenize(out 0 --tokenizer byte --decode --text "256, 104 105,257")
expect_equal("--decode" "${out}" "hi")

run_tokenize(out 0 --tokenizer byte --decode --text "[104,105]" --json)
expect_equal("--decode --json" "${out}" [[{"text":"hi"}]])

# A text file is taken byte for byte (its trailing newline too).
set(file "${CMAKE_CURRENT_BINARY_DIR}/tokenize_cli_input.txt")
file(WRITE "${file}" "ok\n")
run_tokenize(out 0 --tokenizer byte --text-file "${file}" --no-bos)
expect_equal("--text-file" "${out}" "111 107 10")
file(REMOVE "${file}")

# Failures: a missing tokenizer file and a bad id are errors (exit 1); a wrong combination of
# options is a usage error (exit 2).
run_tokenize(out 1 --tokenizer "${CMAKE_CURRENT_BINARY_DIR}/no-such-tokenizer.model" --text "hi")
if(NOT out_err MATCHES "anchorctx: error")
  message(FATAL_ERROR "missing tokenizer: stderr lacks 'anchorctx: error':\n${out_err}")
endif()
run_tokenize(out 1 --tokenizer byte --decode --text "104 x")
if(NOT out_err MATCHES "anchorctx: error: --decode: 'x' is not a token id")
  message(FATAL_ERROR "bad id: unexpected stderr:\n${out_err}")
endif()
run_tokenize(out 1 --tokenizer byte --decode --text "999")
run_tokenize(out 2 --tokenizer byte --text "a" --text-file "${EXE}")
run_tokenize(out 2 --tokenizer byte)
run_tokenize(out 2 --text "hi")

# Output that cannot be written is an error: into /dev/full it was lost with exit 0.
if(EXISTS /dev/full)
  execute_process(COMMAND ${EXE} tokenize --tokenizer byte --text "hello" OUTPUT_FILE /dev/full
                  RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 1 OR NOT err MATCHES "writing the output on stdout failed: No space left")
    message(FATAL_ERROR "tokenize into /dev/full: exit ${rc}\n${err}")
  endif()
endif()
