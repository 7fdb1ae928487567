# Checks shared by the CLI tests (CMake scripts run by CTest with -DEXE=<anchorctx>).

# Requires each named variable to be given with -D<name>=... .
function(require_variables)
  foreach(var ${ARGN})
    if(NOT ${var})
      message(FATAL_ERROR "pass -D${var}=...")
    endif()
  endforeach()
endfunction()

# Sets `checkpoint` and `tokenizer` to the real stories260K files under ${DATA}, or ends the
# calling script with CTest's "skipped:" message when they are absent (a user's clone has no
# ../shared). A macro, so that its return() ends the script that calls it.
macro(stories260k_or_skip)
  set(checkpoint "${DATA}/stories260k/stories260K.bin")
  set(tokenizer "${DATA}/stories260k/tok512.bin")
  if(NOT EXISTS "${checkpoint}" OR NOT EXISTS "${tokenizer}")
    message("skipped: real data ${DATA}/stories260k is absent (it sits beside the checkout in CI)")
    return()
  endif()
endmacro()

# Runs `${EXE} ARGN` and requires a failure whose stderr matches `regex` and an empty stdout
# (errors go to stderr; a failed run never prints a result).
function(expect_failure regex)
  string(JOIN " " args ${ARGN})
  execute_process(COMMAND ${EXE} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "anchorctx ${args}: exit 0, expected a failure\n${out}")
  endif()
  if(NOT err MATCHES "${regex}")
    message(FATAL_ERROR "anchorctx ${args}: stderr does not match '${regex}':\n${err}")
  endif()
  if(NOT out STREQUAL "")
    message(FATAL_ERROR "anchorctx ${args}: failed but printed on stdout:\n${out}")
  endif()
endfunction()

function(expect_equal what got want)
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "${what}: got\n'${got}'\nexpected\n'${want}'")
  endif()
endfunction()

# Runs `${EXE} ARGN`, requires exit 0 and leaves stdout in `out_var`.
function(run_ok out_var)
  execute_process(COMMAND ${EXE} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(JOIN " " args ${ARGN})
    message(FATAL_ERROR "anchorctx ${args}: exit ${rc}\nstdout:\n${out}\nstderr:\n${err}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

# Requires every key of ARGN at the top level of the JSON object `json`.
function(require_keys json)
  foreach(key ${ARGN})
    string(JSON value ERROR_VARIABLE missing GET "${json}" ${key})
    if(missing)
      message(FATAL_ERROR "JSON lacks '${key}':\n${json}")
    endif()
  endforeach()
endfunction()
