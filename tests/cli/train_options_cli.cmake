# `anchorctx train`'s one vocabulary of options: the options a run records in
# trainer_state.json, written back as a --config TOML file, give the same run bit for bit; the
# enum options' choices and errors come from their tables (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -DWORK=/tmp/dir -P train_options_cli.cmake
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

# A small corpus (several documents per window), packed with the byte tokenizer.
set(corpus "")
foreach(i RANGE 1 60)
  math(EXPR words "5 + (${i} * 7) % 23")
  set(text "document ${i}:")
  foreach(w RANGE 1 ${words})
    string(APPEND text " word${w} of ${i}")
  endforeach()
  string(APPEND corpus "{\"text\": \"${text}.\"}\n")
endforeach()
file(WRITE "${WORK}/corpus.jsonl" "${corpus}")
run_ok(packed pack --input "${WORK}/corpus.jsonl" --tokenizer byte --seq-len 96
       --out "${WORK}/data" --quiet --json)

# The losses of a run folder's metrics.jsonl, one per step, as written (shortest round trip).
function(read_losses run out_var)
  file(STRINGS "${run}/metrics.jsonl" lines)
  set(losses "")
  foreach(line IN LISTS lines)
    string(JSON loss GET "${line}" loss)
    list(APPEND losses "${loss}")
  endforeach()
  set(${out_var} "${losses}" PARENT_SCOPE)
endfunction()

# The recorded options of a checkpoint as a TOML file of `key = value` lines.
function(options_to_toml state_file toml_file)
  file(READ "${state_file}" state)
  string(JSON options GET "${state}" options)
  string(JSON n LENGTH "${options}")
  math(EXPR last "${n} - 1")
  set(toml "")
  foreach(i RANGE ${last})
    string(JSON key MEMBER "${options}" ${i})
    string(JSON type TYPE "${options}" "${key}")
    string(JSON value GET "${options}" "${key}")
    if(type STREQUAL "STRING")
      string(APPEND toml "${key} = \"${value}\"\n")
    elseif(type STREQUAL "BOOLEAN")
      if(value)
        string(APPEND toml "${key} = true\n")
      else()
        string(APPEND toml "${key} = false\n")
      endif()
    elseif(type STREQUAL "ARRAY")
      string(JSON len LENGTH "${options}" "${key}")
      set(items "")
      if(len GREATER 0)
        math(EXPR lastitem "${len} - 1")
        foreach(k RANGE ${lastitem})
          string(JSON item GET "${options}" "${key}" ${k})
          list(APPEND items "\"${item}\"")
        endforeach()
      endif()
      list(JOIN items ", " joined)
      string(APPEND toml "${key} = [${joined}]\n")
    else()
      string(APPEND toml "${key} = ${value}\n")
    endif()
  endforeach()
  file(WRITE "${toml_file}" "${toml}")
endfunction()

# A run with many options away from their defaults (an alias spelling included).
run_ok(first train --data "${WORK}/data" --out "${WORK}/first" --preset tiny --steps 4
       --precision bf16 --rope-mode exact --mask intra-doc --positions reset
       --mask-doc-boundaries --batch-windows 2 --grad-accum 2 --schedule linear --lr 0.003
       --min-lr 0.0003 --warmup-steps 2 --warmup-start zero --beta2 0.95 --weight-decay 0.05
       --clip-grad-norm 0.5 --max-consecutive-skips 5
       --seed 7 --log-every 1 --save-every 2 --keep-last 0 --loss-chunk 64 --no-tensorboard
       --quiet --json)
set(state "${WORK}/first/checkpoints/step-000004/trainer_state.json")
file(READ "${state}" state_text)
string(JSON recorded_mask GET "${state_text}" options mask)
expect_equal("recorded mask (canonical name of the alias)" "${recorded_mask}" "intra_doc")
string(JSON recorded_accum GET "${state_text}" options grad-accum)
expect_equal("recorded grad-accum" "${recorded_accum}" "2")
string(JSON recorded_files GET "${state_text}" options copy-file)
expect_equal("recorded copy-file (none: an empty list)" "${recorded_files}" "[]")

# Fed back through --config into another folder: the same run.
options_to_toml("${state}" "${WORK}/recorded.toml")
run_ok(second train --config "${WORK}/recorded.toml" --out "${WORK}/second" --quiet --json)
# --warmup-start zero: transformers' convention, the first step at lr 0, the second at lr / 2.
file(STRINGS "${WORK}/first/metrics.jsonl" lines)
list(GET lines 0 line)
string(JSON lr GET "${line}" lr)
expect_equal("lr of step 1 with --warmup-start zero" "${lr}" "0.0")
list(GET lines 1 line)
string(JSON lr GET "${line}" lr)
expect_equal("lr of step 2 with --warmup-start zero" "${lr}" "0.0015")
read_losses("${WORK}/first" first_losses)
read_losses("${WORK}/second" second_losses)
list(LENGTH first_losses n)
expect_equal("logged steps" "${n}" "4")
expect_equal("losses of the run fed back from its recorded options" "${second_losses}"
             "${first_losses}")
foreach(f model.safetensors optimizer.safetensors)
  file(SHA256 "${WORK}/first/checkpoints/step-000004/${f}" a)
  file(SHA256 "${WORK}/second/checkpoints/step-000004/${f}" b)
  expect_equal("${f} of the run fed back from its recorded options" "${b}" "${a}")
endforeach()
# The second run records the same options (but its own --out).
file(READ "${WORK}/second/checkpoints/step-000004/trainer_state.json" second_state)
string(JSON first_options GET "${state_text}" options)
string(JSON second_options GET "${second_state}" options)
string(JSON first_options SET "${first_options}" out "\"\"")
string(JSON second_options SET "${second_options}" out "\"\"")
string(JSON same EQUAL "${first_options}" "${second_options}")
if(NOT same)
  message(FATAL_ERROR "recorded options differ:\n${first_options}\n${second_options}")
endif()

# Enum options: the choices in --help and in the error come from the enum's table.
run_ok(help train --help)
foreach(choices "{causal,intra_doc,anchor}" "{global,reset,anchor}" "{fp32,hf_bf16,exact}"
        "{fp32,bf16}" "{constant,linear,cosine}" "{one_step,zero}")
  string(FIND "${help}" "${choices}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "train --help does not show ${choices}:\n${help}")
  endif()
endforeach()
expect_failure("--mask: 'sliding' is not one of causal, intra_doc or anchor" train
               --data "${WORK}/data" --out "${WORK}/r1" --preset tiny --mask sliding)
expect_failure("--positions: 'continuous' is not one of global, reset or anchor" train
               --data "${WORK}/data" --out "${WORK}/r2" --preset tiny --positions continuous)
# A --copy-file that cannot be copied is refused before the first step (it was found at the
# first checkpoint, after every step had run), and no run folder is made.
expect_failure("no-such-notes.txt: not a regular file to copy into the checkpoints" train
               --data "${WORK}/data" --out "${WORK}/r_copy" --preset tiny --steps 1000
               --copy-file "${WORK}/no-such-notes.txt")
if(EXISTS "${WORK}/r_copy")
  message(FATAL_ERROR "a refused --copy-file left a run folder")
endif()
file(WRITE "${WORK}/bad.toml" "schedule = \"step\"\n")
expect_failure("bad.toml.*schedule.*'step' is not one of constant, linear or cosine" train
               --config "${WORK}/bad.toml" --data "${WORK}/data" --out "${WORK}/r3" --preset tiny)
# A bad value in the file is the usage error it is on the command line: exit 2 (it was 1).
execute_process(COMMAND ${EXE} train --config "${WORK}/bad.toml" --data "${WORK}/data"
                        --out "${WORK}/r3" --preset tiny RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
expect_equal("exit status of a bad --config value" "${rc}" "2")
# --config problems named with the file (and its line and key): a folder (was silently ignored),
# a key without a value (was "--steps must be at least 1"), a number beyond 64 bits (was
# clamped to INT64_MAX), on the command line too.
file(MAKE_DIRECTORY "${WORK}/config-folder")
expect_failure("--config '[^']*config-folder': not a regular file" train
               --config "${WORK}/config-folder" --data "${WORK}/data" --out "${WORK}/r4" --preset tiny)
file(WRITE "${WORK}/empty-value.toml" "lr = 0.001\nsteps = \n")
expect_failure("--config '[^']*empty-value.toml': line 2: 'steps' has no value" train
               --config "${WORK}/empty-value.toml" --data "${WORK}/data" --out "${WORK}/r5"
               --preset tiny)
file(WRITE "${WORK}/huge.toml" "steps = 99999999999999999999\n")
expect_failure("huge.toml': line 1: 'steps':.*out of the range of a 64-bit integer" train
               --config "${WORK}/huge.toml" --data "${WORK}/data" --out "${WORK}/r6" --preset tiny)
expect_failure("--steps:.*'99999999999999999999' is out of the range" train
               --steps 99999999999999999999 --data "${WORK}/data" --out "${WORK}/r7" --preset tiny)
expect_failure("--seed:.*'-1' is negative" train
               --seed -1 --data "${WORK}/data" --out "${WORK}/r8" --preset tiny)
# A value that is not UTF-8 (as an argument would be, main.cpp): refused naming the file, the
# line and the key before any work; it failed at the first checkpoint, after the training, with
# nlohmann's text, leaving the run folder.
string(ASCII 255 not_utf8)
file(WRITE "${WORK}/bytes.toml" "preset = \"tiny\"\nout = \"${WORK}/utf8run_${not_utf8}\"\n")
expect_failure("bytes.toml': line 2: 'out': the value '[^']*utf8run_[^']+' is not valid UTF-8"
               train --config "${WORK}/bytes.toml" --data "${WORK}/data" --steps 1)
file(GLOB left "${WORK}/utf8run_*")
if(left)
  message(FATAL_ERROR "a refused --config left a run folder: ${left}")
endif()
# Numbers that used to be taken silently: NaN or a negative clip (meant "off"), a negative
# --keep-last, and a micro-batch larger than the dataset (ran out of memory).
foreach(clip nan -1)
  expect_failure("--clip-grad-norm must be 0 \\(off\\) or a positive number" train
                 --clip-grad-norm ${clip} --data "${WORK}/data" --out "${WORK}/r9" --preset tiny)
endforeach()
expect_failure("--keep-last must be 0 \\(keep all\\) or positive" train
               --keep-last -1 --data "${WORK}/data" --out "${WORK}/r10" --preset tiny)
expect_failure("--batch-windows 100000000 is more than the [0-9]+ windows of" train
               --batch-windows 100000000 --data "${WORK}/data" --out "${WORK}/r11" --preset tiny
               --no-tensorboard --quiet)
expect_failure("--policies: 'reset'|'reset' is not measured" rope-drift
               --model "${WORK}/nothing" --policies reset)
# Every --threads takes 0 (all) to 4096 (core::kMaxThreads): -1 was accepted silently, and
# INT32_MAX ended the process in libgomp (out of memory) with no anchorctx error.
foreach(threads -1 4097 2147483647)
  expect_failure("--threads.*${threads}.*0.*4096" train --data "${WORK}/data"
                 --out "${WORK}/r4" --preset tiny --threads ${threads})
  expect_failure("--threads.*${threads}.*0.*4096" bench train --preset tiny --seq-len 16
                 --threads ${threads})
endforeach()
if(EXISTS "${WORK}/r4")
  message(FATAL_ERROR "a refused --threads created the run folder")
endif()
