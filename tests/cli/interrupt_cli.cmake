# Ctrl-C and SIGTERM stop `train` at a step boundary (core/interrupt.h), end to end:
#   cmake -DEXE=/path/to/anchorctx -DFIXTURES=tests/data/fixtures -DWORK=/tmp/x -P interrupt_cli.cmake
# A train that checkpoints every step gets SIGINT once it has written a checkpoint: it must exit
# with 130 (128 + SIGINT) naming its last checkpoint, leave only complete checkpoints (no hidden
# temporary folder), and a --resume must continue from it. Then SIGTERM: 143.
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE FIXTURES WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
run_ok(packed pack --input "${FIXTURES}/small_corpus.jsonl" --tokenizer byte --seq-len 64
       --out "${WORK}/data" --quiet)
set(run "${WORK}/run")
set(train train --data "${WORK}/data" --out "${run}" --preset tiny --quiet --no-tensorboard
    --threads 1 --save-every 1 --keep-last 2 --steps 1000000)

# (A non-interactive shell starts a background job with SIGINT ignored, and anchorctx keeps an
# ignored signal ignored, as under nohup: env --default-signal restores it for the test.)
# The newest checkpoint's folder, or "" (names are zero-padded: the last in order is the newest).
set(newest "ls -d '${run}'/checkpoints/step-* 2>/dev/null | tail -1")
foreach(sig INT TERM)
  # The signal goes once this try has written a checkpoint (at most 60 s, then 97).
  execute_process(
    COMMAND sh -c "before=$(${newest}); env --default-signal=INT \"$0\" \"$@\" & pid=$!; i=0; \
while [ \"$(${newest})\" = \"$before\" ]; do i=$((i+1)); \
if [ $i -gt 1200 ]; then kill -9 $pid; exit 97; fi; sleep 0.05; done; \
kill -${sig} $pid; wait $pid" ${EXE} ${train} --resume
    RESULT_VARIABLE rc ERROR_VARIABLE err TIMEOUT 300)
  if(rc EQUAL 97)
    message(FATAL_ERROR "SIG${sig}: train wrote no checkpoint in 60 s:\n${err}")
  endif()
  if(sig STREQUAL "INT")
    expect_equal("exit status after SIGINT" "${rc}" "130")
  else()
    expect_equal("exit status after SIGTERM" "${rc}" "143")
  endif()
  if(NOT err MATCHES "interrupted \\(SIG${sig}\\) before step [0-9]+: the last checkpoint is ")
    message(FATAL_ERROR "SIG${sig}: no message naming the last checkpoint:\n${err}")
  endif()
  file(GLOB hidden LIST_DIRECTORIES true "${run}/checkpoints/.*")
  if(hidden)
    message(FATAL_ERROR "SIG${sig} left temporary folders: ${hidden}")
  endif()
endforeach()

# The run goes on from its last checkpoint.
file(GLOB done LIST_DIRECTORIES true "${run}/checkpoints/step-*")
list(SORT done)
list(GET done -1 last)
string(REGEX MATCH "[0-9]+$" last_step "${last}")
math(EXPR next "${last_step} + 1")
string(REPLACE ";--steps;1000000" "" short "${train}")
run_ok(resumed ${short} --steps ${next} --resume)
math(EXPR next_padded "1000000 + ${next}")
string(SUBSTRING "${next_padded}" 1 6 next_padded)
if(NOT EXISTS "${run}/checkpoints/step-${next_padded}")
  message(FATAL_ERROR "--resume after the signals wrote no step-${next_padded}:\n${resumed}")
endif()
