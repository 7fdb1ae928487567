# One writer per run folder (issue 11, item 2), end to end with two processes:
#   cmake -DEXE=/path/to/anchorctx -DFIXTURES=tests/data/fixtures -DWORK=/tmp/x -P run_lock_cli.cmake
# A long `train` runs; once it holds the lock (its pid is in the lock file), a second `train` on
# the same --out must fail at once naming that pid; then the first is killed with SIGKILL and a
# third `train` must take the folder (a dead holder never blocks). (`--resume` takes the same
# lock: the trainer takes it before reading a checkpoint; tests/train/trainer_test.cpp.)
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE FIXTURES WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
run_ok(packed pack --input "${FIXTURES}/small_corpus.jsonl" --tokenizer byte --seq-len 64
       --out "${WORK}/data" --quiet)
set(run "${WORK}/run")
set(lock "${run}/anchorctx.lock")
set(train train --data "${WORK}/data" --out "${run}" --preset tiny --quiet --no-tensorboard)

# Both commands start together (a pipeline; nothing is written on stdout). The first records its
# pid and becomes the long train. The second waits for a pid in the lock file (at most 60 s, then
# kills the first and gives up with 97), tries the folder, then kills the first with SIGKILL and
# exits with its own try's status.
set(first_pid "${WORK}/first.pid")
execute_process(
  COMMAND sh -c "echo $$ > '${first_pid}'; exec \"$0\" \"$@\"" ${EXE} ${train} --steps 1000000
  COMMAND sh -c "i=0; while [ ! -s '${lock}' ]; do i=$((i+1)); if [ $i -gt 1200 ]; then \
kill -9 $(cat '${first_pid}'); exit 97; fi; sleep 0.05; done; holder=$(cat '${lock}'); \
\"$0\" \"$@\"; rc=$?; echo \"holder=$holder\" >&2; kill -9 $(cat '${first_pid}'); exit $rc"
          ${EXE} ${train} --steps 2
  RESULTS_VARIABLE results ERROR_VARIABLE err TIMEOUT 300)
list(GET results 0 first_rc)
list(GET results 1 second_rc)
if(second_rc EQUAL 97)
  message(FATAL_ERROR "the first train never wrote its pid into ${lock}:\n${err}")
endif()
if(second_rc EQUAL 0)
  message(FATAL_ERROR "a second train on a folder in use ran (exit 0):\n${err}")
endif()
string(REGEX MATCH "holder=([0-9]+)" _ "${err}")
set(holder "${CMAKE_MATCH_1}")
file(STRINGS "${first_pid}" first)
expect_equal("the pid in the lock file" "${holder}" "${first}")
if(holder STREQUAL "" OR NOT err MATCHES "run folder is in use by another anchorctx process \\(pid ${holder},")
  message(FATAL_ERROR "the refusal does not name the holder's pid ${holder}:\n${err}")
endif()
if(first_rc EQUAL 0)
  message(FATAL_ERROR "the first train was not killed (exit ${first_rc}):\n${err}")
endif()

# The killed holder's lock file is still there; it must not block.
if(NOT EXISTS "${lock}")
  message(FATAL_ERROR "no lock file ${lock}")
endif()
run_ok(resumed ${train} --steps 2 --json)
string(JSON steps GET "${resumed}" steps)
expect_equal("steps after taking over the folder" "${steps}" "2")
