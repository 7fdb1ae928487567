# `--force` replaces only what anchorctx wrote (issue 11, item 1), end to end with `pack`:
#   cmake -DEXE=/path/to/anchorctx -DFIXTURES=tests/data/fixtures -DWORK=/tmp/x -P force_cli.cmake
# `.`, `..`, the folder holding the input, and a folder holding a file a dataset does not have
# are refused, each with its reason, and every user file survives; a dataset folder pack wrote
# is replaced, leaving no hidden temporary folder behind (a killed pack's is swept).
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE FIXTURES WORK)
file(REMOVE_RECURSE "${WORK}")
set(user "${WORK}/user")
file(MAKE_DIRECTORY "${user}/sub")
file(COPY_FILE "${FIXTURES}/small_corpus.jsonl" "${user}/corpus.jsonl")
file(WRITE "${user}/notes.txt" "mine\n")
file(WRITE "${user}/sub/keep.txt" "mine too\n")

# expect_failure, run in the folder `dir`.
function(expect_failure_in dir regex)
  string(JOIN " " args ${ARGN})
  execute_process(COMMAND ${EXE} ${ARGN} WORKING_DIRECTORY "${dir}" RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "(in ${dir}) anchorctx ${args}: exit 0, expected a failure")
  endif()
  if(NOT err MATCHES "${regex}")
    message(FATAL_ERROR "(in ${dir}) anchorctx ${args}: stderr does not match '${regex}':\n${err}")
  endif()
endfunction()

# Every file the user put there is still there, unchanged.
function(expect_user_files_intact)
  foreach(f corpus.jsonl notes.txt sub/keep.txt)
    if(NOT EXISTS "${user}/${f}")
      message(FATAL_ERROR "--force removed the user's ${f}")
    endif()
  endforeach()
  file(READ "${user}/notes.txt" notes)
  expect_equal("notes.txt" "${notes}" "mine\n")
endfunction()

set(pack pack --tokenizer byte --seq-len 64 --quiet --force)
expect_failure_in("${user}" "refusing to replace '\\.': it names the current or a parent folder"
                  ${pack} --input corpus.jsonl --out .)
expect_failure_in("${user}/sub" "refusing to replace '\\.\\.': it names the current or a parent"
                  ${pack} --input ../corpus.jsonl --out ..)
expect_failure_in("${user}/sub" "it is or holds the current folder"
                  ${pack} --input ../corpus.jsonl --out "${user}")
expect_failure_in("${WORK}" "it is or holds the input 'user/corpus.jsonl'"
                  ${pack} --input user/corpus.jsonl --out user)
expect_failure_in("${WORK}" "it holds 'keep.txt', which a dataset folder written by anchorctx"
                  ${pack} --input user/corpus.jsonl --out user/sub)
expect_user_files_intact()

# A dataset folder pack wrote is replaced (atomically: nothing hidden is left beside it) ...
run_ok(first pack --input "${user}/corpus.jsonl" --tokenizer byte --seq-len 64 --quiet
       --out "${WORK}/ds")
# A killed pack's hidden temporary folder (its process gone) is swept by the next pack of that
# name (issue 11, item 6): the pid of a shell that has exited names no process.
execute_process(COMMAND sh -c "echo $$" OUTPUT_VARIABLE dead OUTPUT_STRIP_TRAILING_WHITESPACE)
file(WRITE "${WORK}/.ds.tmp-${dead}-0/tokens.bin" "left by a killed pack")
run_ok(second ${pack} --input "${user}/corpus.jsonl" --out "${WORK}/ds" --seed 7)
file(GLOB hidden LIST_DIRECTORIES true "${WORK}/.*")
expect_equal("hidden leftovers beside the dataset" "${hidden}" "")
# ... but not once it holds a file a dataset does not have.
file(WRITE "${WORK}/ds/mine.txt" "added by hand\n")
expect_failure("holds 'mine.txt'" ${pack} --input "${user}/corpus.jsonl" --out "${WORK}/ds")
if(NOT EXISTS "${WORK}/ds/mine.txt" OR NOT EXISTS "${WORK}/ds/meta.json")
  message(FATAL_ERROR "a refused --force changed the folder")
endif()
