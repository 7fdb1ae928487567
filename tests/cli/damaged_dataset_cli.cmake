# Damaged packed datasets: every command that reads one (train, inspect, rope-drift --dataset)
# stops with an error naming the damaged file and exit 1, never a crash (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -DFIXTURES=tests/data/fixtures -DWORK=/tmp/x -P damaged_dataset_cli.cmake
# Each damage is made on a fresh copy of one packed folder: an order.bin entry out of range, a
# token byte changed to another valid id and to an id outside the vocabulary, a document start
# pushed outside its window, a truncated file.
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE FIXTURES WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

# Unshuffled, so logical window 0 is physical window 0 (the first one train and inspect read).
run_ok(out pack --input "${FIXTURES}/small_corpus.jsonl" --tokenizer byte --seq-len 128
       --no-shuffle --out "${WORK}/clean" --quiet)
run_ok(out demo --out "${WORK}/demo" --steps 1 --documents 40 --seq-len 128 --quiet)

# A fresh copy of the clean folder named `name`, in `dir_var`.
function(copy_clean name dir_var)
  file(REMOVE_RECURSE "${WORK}/${name}")
  file(COPY "${WORK}/clean/" DESTINATION "${WORK}/${name}")
  set(${dir_var} "${WORK}/${name}" PARENT_SCOPE)
endfunction()

# Overwrites bytes of `file` at `offset` with `octal` (printf escapes, e.g. \\377), size kept.
function(poke file offset octal)
  execute_process(COMMAND sh -c "printf '${octal}' | dd of='${file}' bs=1 seek=${offset} conv=notrunc status=none"
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "could not overwrite ${file}")
  endif()
endfunction()

# Like expect_failure, and the exit status must be 1 (an error, not a signal such as 139).
function(expect_error regex)
  string(JOIN " " args ${ARGN})
  execute_process(COMMAND ${EXE} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc STREQUAL "1")
    message(FATAL_ERROR "anchorctx ${args}: exit '${rc}', expected 1 (an error)\n${err}")
  endif()
  if(NOT err MATCHES "${regex}")
    message(FATAL_ERROR "anchorctx ${args}: stderr does not match '${regex}':\n${err}")
  endif()
endfunction()

# Every reader of `ds` stops with `regex`; `verified` says whether the damage is only visible to
# the content hashes (then the commands that skip them read on, which is their promise).
function(every_reader_fails ds regex)
  expect_error("${regex}" inspect "${ds}" --window 0)
  expect_error("${regex}" train --data "${ds}" --out "${WORK}/run" --preset tiny --steps 1 --quiet)
  expect_error("${regex}" rope-drift --model "${WORK}/demo/model" --dataset "${ds}" --seq-len 64
               --deltas 0 --modes fp32 --policies global --verify-data --quiet)
  if(NOT ARGN STREQUAL "verified-only")
    expect_error("${regex}" inspect "${ds}" --no-verify --window 0)
    expect_error("${regex}" train --data "${ds}" --out "${WORK}/run" --preset tiny --steps 1
                 --no-verify-data --quiet)
    expect_error("${regex}" rope-drift --model "${WORK}/demo/model" --dataset "${ds}" --seq-len 64
                 --deltas 0 --modes fp32 --policies global --quiet)
  endif()
  if(EXISTS "${WORK}/run/checkpoints")
    message(FATAL_ERROR "train wrote checkpoints from the damaged ${ds}")
  endif()
endfunction()

# order.bin's first entry -> 2^64 - 1 (this crashed with SIGSEGV before it was checked).
copy_clean(order ds)
poke("${ds}/order.bin" 0 "\\377\\377\\377\\377\\377\\377\\377\\377")
every_reader_fails("${ds}" "order.bin: entry 0 \\(18446744073709551615\\) is out of range")

# A token's high byte: an id outside the vocabulary, caught where the window is read.
copy_clean(token_range ds)
poke("${ds}/tokens.bin" 1 "\\377")
every_reader_fails("${ds}" "tokens.bin: (window 0 token 0: id [0-9]+ outside the vocabulary|content hash)")
expect_error("tokens.bin: window 0 token 0: id [0-9]+ outside the vocabulary"
             train --data "${ds}" --out "${WORK}/run" --preset tiny --steps 1 --no-verify-data --quiet)

# A token's low byte -> 1: a valid id, so only the content hash (train's default) sees it.
copy_clean(token_valid ds)
poke("${ds}/tokens.bin" 6 "\\001")
every_reader_fails("${ds}" "tokens.bin: content hash" verified-only)

# A document start's second byte: past the window's end, caught when the folder is opened.
copy_clean(doc_start ds)
poke("${ds}/doc_starts.bin" 5 "\\377")
every_reader_fails("${ds}" "doc_starts.bin: window 0 document 1 starts at")

# A truncated file.
foreach(name tokens.bin doc_starts.bin order.bin)
  copy_clean(truncated ds)
  file(SIZE "${ds}/${name}" size)
  math(EXPR size "${size} - 1")
  execute_process(COMMAND truncate -s ${size} "${ds}/${name}")
  every_reader_fails("${ds}" "${name}: ${size} bytes, meta.json records")
endforeach()

# meta.json keys of the wrong type, named with the key at open (nlohmann's raw type_error named
# neither the file nor the key, and only after the hash check or at the first checkpoint).
file(READ "${WORK}/clean/meta.json" clean_meta)
foreach(edit "files;tokens.bin;xxh3_128" "tokenizer;spec" "tokenizer;content_hash")
  copy_clean(meta_type ds)
  string(JSON meta SET "${clean_meta}" ${edit} 7)
  file(WRITE "${ds}/meta.json" "${meta}")
  string(JOIN "." key ${edit})
  every_reader_fails("${ds}" "meta.json: '${key}' is (7, )?not a string")
endforeach()
# No tokenizer recorded: inspect --decode asks for --tokenizer (was "cannot use value() with
# null").
copy_clean(no_tokenizer ds)
string(JSON meta REMOVE "${clean_meta}" tokenizer)
file(WRITE "${ds}/meta.json" "${meta}")
expect_error("meta.json records no tokenizer spec; pass --tokenizer" inspect "${ds}" --window 0
             --decode)
run_ok(out inspect "${ds}" --window 0 --decode --tokenizer byte)
# meta.json a folder or a FIFO: named (libstdc++'s "basic_filebuf::underflow"; a FIFO hung).
copy_clean(meta_folder ds)
file(REMOVE "${ds}/meta.json")
file(MAKE_DIRECTORY "${ds}/meta.json")
every_reader_fails("${ds}" "meta.json: not a regular file \\(a folder")
copy_clean(meta_fifo ds)
file(REMOVE "${ds}/meta.json")
execute_process(COMMAND mkfifo "${ds}/meta.json" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mkfifo failed")
endif()
every_reader_fails("${ds}" "meta.json: not a regular file \\(a FIFO")

# The clean folder still trains, verified by default (the line says so).
execute_process(COMMAND ${EXE} train --data "${WORK}/clean" --out "${WORK}/run_ok" --preset tiny
                --steps 1 RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT err MATCHES "verified")
  message(FATAL_ERROR "train on the clean folder: exit ${rc}\n${err}")
endif()
