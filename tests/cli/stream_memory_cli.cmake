# Memory of `tokenize --text-file` and `pack` on one long document stays bounded (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -DWORK=/tmp/x -P stream_memory_cli.cmake
# A 48 MB single-document text file: tokenize streams it (before, it took about 16 bytes per
# byte of text, 770 MB here); pack streams it too (read in 1 MiB parts, its ids flowing into
# the windows: before, it held the document's text and ids, about 330 MB here). Peak RSS from
# /usr/bin/time (skipped when it is absent).
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE WORK)
# AddressSanitizer's quarantine keeps freed blocks resident (337 MB measured here), so the peak
# RSS of a sanitizer build says nothing about the program's own bound.
if(SANITIZED)
  message("skipped: peak RSS is not the program's own under AddressSanitizer")
  return()
endif()
if(NOT EXISTS /usr/bin/time)
  message("skipped: /usr/bin/time is absent (it measures the peak RSS)")
  return()
endif()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

# 48 MiB: a 3 KiB paragraph of prose repeated, no line ending the document.
string(REPEAT "The little fox ran to the river, and the river was cold. Then it said: \"1234 apples!\" " 36 paragraph)
string(REPEAT "${paragraph}" 16384 text)
file(WRITE "${WORK}/long.txt" "${text}")
file(SIZE "${WORK}/long.txt" bytes)

# Runs ARGN under /usr/bin/time, stdout to /dev/null; requires exit 0 and a peak RSS under
# `limit_mb`.
function(expect_peak_below limit_mb)
  string(JOIN " " args ${ARGN})
  execute_process(COMMAND /usr/bin/time -f "peak_kb=%M" ${EXE} ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_FILE /dev/null ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "anchorctx ${args}: exit ${rc}\n${err}")
  endif()
  if(NOT err MATCHES "peak_kb=([0-9]+)")
    message(FATAL_ERROR "no peak RSS from /usr/bin/time:\n${err}")
  endif()
  math(EXPR mb "${CMAKE_MATCH_1} / 1024")
  message("anchorctx ${args}: peak RSS ${mb} MB on ${bytes} bytes")
  if(mb GREATER ${limit_mb})
    message(FATAL_ERROR "anchorctx ${args}: peak RSS ${mb} MB, over ${limit_mb} MB")
  endif()
endfunction()

expect_peak_below(100 tokenize --tokenizer byte --text-file "${WORK}/long.txt")
expect_peak_below(100 tokenize --tokenizer byte --text-file "${WORK}/long.txt" --json)
# pack's constant with 2 threads and the byte tokenizer: 4 blocks of 4 MiB of text and 16 MiB
# of ids, 4 MiB of write buffer per file (measured 144-156 MB on a 200 MB document).
expect_peak_below(220 pack --input "${WORK}/long.txt" --tokenizer byte --seq-len 2047 --threads 2
                  --out "${WORK}/ds" --quiet)
