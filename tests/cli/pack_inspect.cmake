# `anchorctx pack` then `anchorctx inspect --json`, end to end on the committed small corpus:
#   cmake -DEXE=/path/to/anchorctx -DFIXTURES=tests/data/fixtures -DWORK=/tmp/x -P pack_inspect.cmake
# Checks the summary and inspect's JSON keys, each anchor mode's visible fractions, tags and
# --skip-bad counts, and that bad input and a damaged folder fail with a message naming the
# file (and line).
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE FIXTURES WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(CORPUS "${FIXTURES}/small_corpus.jsonl")

# Runs the executable with ARGN, requires success and one JSON object on stdout.
function(run_json out_var)
  string(JOIN " " args ${ARGN})
  execute_process(COMMAND ${EXE} ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "anchorctx ${args}: exit ${rc}\nstderr:\n${err}")
  endif()
  string(STRIP "${out}" out)
  string(JSON type ERROR_VARIABLE json_error TYPE "${out}")
  if(json_error OR NOT type STREQUAL "OBJECT")
    message(FATAL_ERROR "anchorctx ${args}: stdout is not one JSON object (${json_error}):\n${out}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

function(expect_key json want)
  string(JSON got GET "${json}" ${ARGN})
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "${ARGN} = '${got}', expected '${want}'\n${json}")
  endif()
endfunction()

# Each anchor mode: pack, then inspect.
foreach(mode shared per_doc none)
  set(ds "${WORK}/ds_${mode}")
  run_json(s pack --input "${CORPUS}" --tokenizer byte --seq-len 256 --anchor-mode ${mode}
           --out "${ds}" --batch 2 --seed 3 --quiet --json)
  expect_key("${s}" ${mode} anchor_mode)
  expect_key("${s}" 24 documents_read)
  expect_key("${s}" 2 stats documents_skipped_short)  # "Hi" and "Ok"
  string(JSON windows GET "${s}" windows)
  if(windows LESS 10)
    message(FATAL_ERROR "${mode}: ${windows} windows")
  endif()
  run_json(j inspect "${ds}" --json)
  foreach(key windows tokens seq_len documents anchor_mode visible_fraction
          doc_length_histogram documents_per_window)
    string(JSON v ERROR_VARIABLE e GET "${j}" ${key})
    if(e)
      message(FATAL_ERROR "inspect --json: no '${key}':\n${j}")
    endif()
  endforeach()
  expect_key("${j}" ${windows} windows)
  expect_key("${j}" 256 seq_len)
  expect_key("${j}" ${mode} anchor_mode)
  math(EXPR tokens "${windows} * 257")
  expect_key("${j}" ${tokens} tokens)
  string(JSON causal GET "${j}" visible_fraction causal)
  string(JSON intra GET "${j}" visible_fraction intra_doc)
  string(JSON anchor GET "${j}" visible_fraction anchor)
  if(NOT causal EQUAL 1 OR intra GREATER anchor OR intra GREATER_EQUAL 1 OR intra LESS_EQUAL 0)
    message(FATAL_ERROR "${mode}: visible fractions causal ${causal} intra_doc ${intra} anchor ${anchor}")
  endif()
  if(mode STREQUAL "shared" AND NOT anchor GREATER intra)
    message(FATAL_ERROR "shared: the anchor adds no visible pairs (${anchor} vs ${intra})")
  endif()
endforeach()

# A window decoded: shared mode's document 0 is the anchor, then the corpus text.
run_json(j inspect "${WORK}/ds_shared" --json --window 0 --decode)
string(JSON first GET "${j}" window doc_starts 0)
string(JSON second GET "${j}" window doc_starts 1)
if(NOT first EQUAL 0 OR NOT second EQUAL 1)
  message(FATAL_ERROR "shared window 0: doc_starts ${first}, ${second}")
endif()

# Text files, one document per line; tags from the source field with loss-mask spans.
run_json(s pack --input "${FIXTURES}/small_corpus.txt" --seq-len 128 --anchor-mode shared
         --one-per-line --out "${WORK}/ds_text" --quiet --json)
expect_key("${s}" 24 documents_read)
run_json(s pack --input "${CORPUS}" --seq-len 128 --out "${WORK}/ds_tags" --tag-field source
         --no-shuffle --quiet --json)
string(JSON tag_tokens GET "${s}" tag_tokens)
if(NOT tag_tokens GREATER 0)
  message(FATAL_ERROR "--tag-field: no tag tokens:\n${s}")
endif()
# --decode --json of a window that cuts a UTF-8 character (2-token windows of "é"s): U+FFFD,
# not nlohmann's "incomplete UTF-8 string" error.
file(WRITE "${WORK}/accents.jsonl" [=[{"text": "caf\u00e9 \u00e9t\u00e9 r\u00e9sum\u00e9"}]=] "\n")
run_ok(out pack --input "${WORK}/accents.jsonl" --seq-len 4 --no-shuffle --out "${WORK}/ds_accents"
       --quiet)
run_json(j inspect "${WORK}/ds_accents" --window 0 --decode --json)

# A dataset inside an input folder is refused: the next pack of the folder read it as input.
file(MAKE_DIRECTORY "${WORK}/infolder")
file(COPY "${CORPUS}" DESTINATION "${WORK}/infolder")
expect_failure("--out '[^']*infolder/ds' lies inside the input folder" pack --input
               "${WORK}/infolder" --seq-len 64 --out "${WORK}/infolder/ds" --quiet)
if(EXISTS "${WORK}/infolder/ds")
  message(FATAL_ERROR "a refused pack left infolder/ds")
endif()

# A tokenizer given by a relative path is recorded absolute: train runs elsewhere found none.
execute_process(COMMAND ${EXE} pack --input "${CORPUS}" --seq-len 64 --tokenizer hf_bpe_spm.json
                        --out "${WORK}/ds_relative" --quiet
                WORKING_DIRECTORY "${FIXTURES}" RESULT_VARIABLE rc ERROR_VARIABLE err)
expect_equal("pack with a relative --tokenizer" "${rc}" "0")
file(READ "${WORK}/ds_relative/meta.json" meta)
string(JSON spec GET "${meta}" tokenizer spec)
if(NOT IS_ABSOLUTE "${spec}" OR NOT EXISTS "${spec}")
  message(FATAL_ERROR "meta.json records the tokenizer as '${spec}'")
endif()

# A --tags file that is not a JSON file is named (a folder, as a FIFO would block).
file(MAKE_DIRECTORY "${WORK}/tags-folder.json")
expect_failure("tags-folder.json: not a regular file" pack --input "${CORPUS}" --seq-len 128
               --out "${WORK}/ds_tags2" --tag-field source --tags "${WORK}/tags-folder.json")
run_json(j inspect "${WORK}/ds_tags" --json --window 0)
string(JSON spans LENGTH "${j}" window loss_spans)
if(spans LESS 2)
  message(FATAL_ERROR "--tag-field: window 0 has no loss-mask span:\n${j}")
endif()

# Bad input: an error naming file and line, nothing left under --out; --skip-bad counts.
set(bad "${WORK}/bad.jsonl")
file(READ "${CORPUS}" good)
file(WRITE "${bad}" "${good}{\"text\": broken\n{\"title\": \"no text\"}\n")
expect_failure("bad.jsonl:25: malformed JSON" pack --input "${bad}" --seq-len 64 --out "${WORK}/ds_bad" --quiet)
if(EXISTS "${WORK}/ds_bad")
  message(FATAL_ERROR "a failed pack left ${WORK}/ds_bad")
endif()
file(GLOB leftovers "${WORK}/.ds_bad*")
if(leftovers)
  message(FATAL_ERROR "a failed pack left ${leftovers}")
endif()
run_json(s pack --input "${bad}" --seq-len 64 --out "${WORK}/ds_skip" --skip-bad --quiet --json)
expect_key("${s}" 1 skipped_lines malformed_json)
expect_key("${s}" 1 skipped_lines missing_field)
expect_failure("already exists" pack --input "${CORPUS}" --seq-len 64 --out "${WORK}/ds_skip" --quiet)
expect_failure("anchorctx: error" pack --input "${CORPUS}" --seq-len 64 --out "${WORK}/x" --anchor-mode flex)
# A negative anchor id is refused, not taken as "unset" (it silently became the default).
expect_failure("--anchor-id -5 is outside the vocabulary"
               pack --input "${CORPUS}" --seq-len 64 --out "${WORK}/neg_anchor" --anchor-id -5 --quiet)
expect_failure("no-such.jsonl: no such file" pack --input "${WORK}/no-such.jsonl" --seq-len 64 --out "${WORK}/y")
# A symbolic-link loop in an input folder is named (libstdc++'s "filesystem error" text escaped).
file(MAKE_DIRECTORY "${WORK}/looped")
file(COPY "${CORPUS}" DESTINATION "${WORK}/looped")
file(CREATE_LINK "loop" "${WORK}/looped/loop" SYMBOLIC)
expect_failure("looped/loop: cannot read it: Too many levels of symbolic links" pack --input
               "${WORK}/looped" --seq-len 64 --out "${WORK}/y")
# File names need not be UTF-8. A walked folder's file with a 0xFF byte in its name packs, its
# name recorded with U+FFFD in meta.json (which must stay valid JSON text); the same name as an
# argument is refused before any work (it failed at the first JSON write, after the work).
string(ASCII 255 byte_ff)
file(MAKE_DIRECTORY "${WORK}/odd_names")
file(WRITE "${WORK}/odd_names/bad${byte_ff}.txt" "${good}")
run_json(s pack --input "${WORK}/odd_names" --seq-len 64 --out "${WORK}/ds_odd" --quiet --json)
file(READ "${WORK}/ds_odd/meta.json" odd_meta)
string(JSON odd_windows GET "${odd_meta}" counts windows)
string(ASCII 239 191 189 replacement)  # U+FFFD in UTF-8
string(FIND "${odd_meta}" "bad${replacement}.txt" at)
if(at LESS 0 OR odd_windows LESS 1)
  message(FATAL_ERROR "meta.json of a walked file named with a 0xFF byte:\n${odd_meta}")
endif()
expect_failure("argument 3, .* is not valid UTF-8"
               pack --input "${WORK}/odd_names/bad${byte_ff}.txt" --seq-len 64 --out "${WORK}/z")
expect_failure("tokenizer" pack --input "${CORPUS}" --seq-len 64 --out "${WORK}/z" --tokenizer "${WORK}/none.model")

# A damaged folder: inspect names the file.
file(READ "${WORK}/ds_none/tokens.bin" head LIMIT 100 HEX)
file(WRITE "${WORK}/ds_none/tokens.bin" "short")
expect_failure("tokens.bin: 5 bytes" inspect "${WORK}/ds_none" --json)
expect_failure("no meta.json" inspect "${WORK}" --json)

# Pre-tokenized rows: documents end inside a row; the overflow is dropped by default (as the
# reference does), kept with --continue-remainder; ids outside the vocabulary name the line.
set(pre "${WORK}/pre.jsonl")
set(ids "0")
foreach(i RANGE 1 39)
  string(APPEND ids ", ${i}")
endforeach()
file(WRITE "${pre}" "{\"input_ids\": [${ids}], \"source\": [{\"end\": 12}, {\"end\": 30}]}\n"
                    "{\"input_ids\": [${ids}]}\n")
run_json(s pack --input "${pre}" --seq-len 15 --anchor-mode none --out "${WORK}/ds_pre" --quiet --json)
expect_key("${s}" 4 stats documents_in)
string(JSON dropped GET "${s}" stats tokens_dropped_remainder)
if(NOT dropped GREATER 0)
  message(FATAL_ERROR "pre-tokenized: nothing dropped by default:\n${s}")
endif()
run_json(s pack --input "${pre}" --seq-len 15 --anchor-mode none --out "${WORK}/ds_pre2"
         --continue-remainder --quiet --json)
expect_key("${s}" 0 stats tokens_dropped_remainder)
file(READ "${WORK}/ds_pre/meta.json" meta)
expect_key("${meta}" OFF options continue_remainder)
file(APPEND "${pre}" "{\"input_ids\": [1, 2, 70000]}\n")
expect_failure("pre.jsonl:3: input_ids holds id 70000" pack --input "${pre}" --seq-len 15 --out "${WORK}/ds_pre3" --quiet)
