# A diverged run under --skip-nonfinite fails (issue 11, item 6), end to end:
#   cmake -DEXE=/path/to/anchorctx -DFIXTURES=tests/data/fixtures -DWORK=/tmp/x -P skip_nonfinite_cli.cmake
# A learning rate of 1e30 makes step 1's update overflow the weights, so every later step is
# non-finite and skipped: the run must stop after --max-consecutive-skips of them, exit non-zero,
# and leave no checkpoint (it used to skip 19 of 20 steps and exit 0).
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE FIXTURES WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
run_ok(packed pack --input "${FIXTURES}/small_corpus.jsonl" --tokenizer byte --seq-len 64
       --out "${WORK}/data" --quiet)
expect_failure("step 4: 3 steps in a row skipped as non-finite \\(--max-consecutive-skips 3\\)"
               train --data "${WORK}/data" --out "${WORK}/run" --preset tiny --steps 30 --lr 1e30
               --warmup-steps 0 --skip-nonfinite --max-consecutive-skips 3 --quiet --no-tensorboard)
if(EXISTS "${WORK}/run/checkpoints")
  file(GLOB saved "${WORK}/run/checkpoints/step-*")
  expect_equal("checkpoints of a diverged run" "${saved}" "")
endif()
