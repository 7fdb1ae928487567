# `anchorctx study --quick` end to end (the pipeline, not the science): every sub-run, the report
# and plots; a rerun that finds everything done; a sub-run resumed from its checkpoint; another
# setting on the same folder refused by name (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -DWORK=/tmp/dir -DCONFIGS=configs -P study_cli.cmake
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE WORK CONFIGS)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(dir "${WORK}/study")

run_ok(out study --quick --quiet --out "${dir}")
foreach(f study.json report.md report.json plots/accuracy_vs_length.svg
          plots/accuracy_vs_length.png plots/stage1_loss.svg plots/stage1_loss.png
          plots/stage0_loss.svg plots/stage0_loss.png stage0/done.json stage0/long/config.json
          stage0/eval-done.json stage0/eval/report.json
          stage1/anchor-s1/eval/report.json stage1/anchor_exact-s1/eval-done.json
          stage1/anchor-s1/drift-done.json stage1/anchor-s1/drift/report.md)
  if(NOT EXISTS "${dir}/${f}")
    message(FATAL_ERROR "the study folder lacks ${f}")
  endif()
endforeach()
file(READ "${dir}/report.json" report)
string(JSON finished GET "${report}" finished)
expect_equal("finished stage-1 runs (4 variants + 3 controls, one seed)" "${finished}" "7")
string(JSON n LENGTH "${report}" verdicts)
expect_equal("verdicts" "${n}" "7")
string(JSON verdict GET "${report}" verdicts 0 verdict)
expect_equal("C1 with one seed (no spread to judge by)" "${verdict}" "inconclusive")
# Every run's drift is in report.json: D per RoPE mode (global shift), averaged over delta1.
foreach(mode hf_bf16 fp32)
  string(JSON type TYPE "${report}" runs anchor-s1 drift D ${mode})
  expect_equal("anchor-s1's drift D (${mode}) in report.json" "${type}" "NUMBER")
endforeach()
# Stage 0's own retrieval at its window (the skill stage 1 extends) is in report.json.
string(JSON type TYPE "${report}" stage0 scores niah_single_2 128)
expect_equal("stage 0's niah_single_2 score at its window (128) in report.json" "${type}" "NUMBER")
# Stage 1 continues from stage 0 with the RoPE base raised.
file(READ "${dir}/stage0/long/config.json" long_config)
string(JSON theta GET "${long_config}" rope_theta)
expect_equal("stage-1 rope_theta" "${theta}" "1000000.0")
file(READ "${dir}/report.md" md)
foreach(row "| AnchorAttention | 1 |" "| Intra-doc \\(reset ids\\) | 1 |" "## Verdicts"
            "## bf16 RoPE drift of the final models" "## Stage 0's retrieval at its own window"
            "Regenerate every number: `anchorctx study --quick --out")
  if(NOT md MATCHES "${row}")
    message(FATAL_ERROR "report.md lacks '${row}':\n${md}")
  endif()
endforeach()

# A rerun finds every done marker: nothing is trained again.
execute_process(COMMAND ${EXE} study --quick --out "${dir}" RESULT_VARIABLE rc ERROR_VARIABLE err)
expect_equal("rerun exit" "${rc}" "0")
if(err MATCHES ": training")
  message(FATAL_ERROR "a rerun of a finished study trained again:\n${err}")
endif()

# Markers record folders relative to the study: a moved study, rerun from another directory,
# still finds everything done (they held --out as typed: a rerun elsewhere could read another
# study's checkpoint).
file(READ "${dir}/stage0/done.json" done0)
string(JSON checkpoint0 GET "${done0}" checkpoint)
if(NOT checkpoint0 MATCHES "^stage0/run/checkpoints/step-[0-9]+$")
  message(FATAL_ERROR "stage0/done.json records '${checkpoint0}', not a path inside the study")
endif()
file(RENAME "${dir}" "${WORK}/moved")
execute_process(COMMAND ${EXE} study --quick --out moved WORKING_DIRECTORY "${WORK}"
                RESULT_VARIABLE rc ERROR_VARIABLE err)
expect_equal("rerun of a moved study, from elsewhere" "${rc}" "0")
if(err MATCHES ": training")
  message(FATAL_ERROR "a moved, finished study trained again:\n${err}")
endif()
file(RENAME "${WORK}/moved" "${dir}")

# An interrupted run (its markers and last checkpoint gone, its checkpoint of step 2 kept)
# resumes from there and trains the one step left.
file(REMOVE "${dir}/stage1/anchor-s1/train-done.json" "${dir}/stage1/anchor-s1/eval-done.json")
file(REMOVE_RECURSE "${dir}/stage1/anchor-s1/run/checkpoints/step-000003")
if(NOT EXISTS "${dir}/stage1/anchor-s1/run/checkpoints/step-000002")
  message(FATAL_ERROR "anchor-s1 kept no step-2 checkpoint")
endif()
execute_process(COMMAND ${EXE} study --quick --out "${dir}" RESULT_VARIABLE rc ERROR_VARIABLE err)
expect_equal("resume exit" "${rc}" "0")
if(NOT err MATCHES "anchor-s1: resuming at step 2 of 3" OR NOT err MATCHES "anchor-s1: step 3/3")
  message(FATAL_ERROR "anchor-s1 did not resume from its step-2 checkpoint:\n${err}")
endif()
# Its model changed, so its stale drift marker is measured again (the file was kept above).
if(NOT err MATCHES "anchor-s1: bf16 RoPE drift")
  message(FATAL_ERROR "the resumed run's RoPE drift was not measured again:\n${err}")
endif()
if(err MATCHES "full-s1: training")
  message(FATAL_ERROR "the resume retrained a finished run:\n${err}")
endif()

# A folder started before the bf16-compute setting existed ran emulated: it continues and
# rewrites its report as such, and another value is refused by name.
file(READ "${dir}/study.json" recorded)
string(JSON recorded REMOVE "${recorded}" config bf16_compute)
file(WRITE "${dir}/study.json" "${recorded}")
run_ok(out study --quick --quiet --out "${dir}")
run_ok(out study --quick --quiet --report-only --out "${dir}")
expect_failure("bf16-compute" study --quick --bf16-compute native --out "${dir}")

# Other settings on the same folder: refused, naming the setting.
expect_failure("stage1-steps \\(3 before, 5 now\\)" study --quick --stage1-steps 5
               --out "${dir}")
expect_failure("run with other settings" study --quick --report-only --seeds 1,2 --out "${dir}")
# An --out that is a file, or lies under one: named, not std::filesystem's raw error.
file(WRITE "${WORK}/a-file" "x\n")
expect_failure("--out '[^']*a-file/sub': '[^']*a-file' is not a folder" study --quick
               --out "${WORK}/a-file/sub")
expect_failure("unknown variant 'sliding'" study --quick --variants full,sliding
               --out "${WORK}/other")
expect_failure("--out" study --quick)

# --report-only rewrites the report of a study folder only: a folder without study.json (here a
# training run's, with its own report.md) or a missing one is refused, and nothing is written.
file(MAKE_DIRECTORY "${WORK}/trainrun")
file(WRITE "${WORK}/trainrun/report.md" "# Training run\n")
expect_failure("not a study folder \\(it has no study.json\\)" study --quick --report-only
               --out "${WORK}/trainrun")
file(READ "${WORK}/trainrun/report.md" kept)
expect_equal("a training run's report.md after --report-only" "${kept}" "# Training run\n")
if(EXISTS "${WORK}/trainrun/report.json" OR EXISTS "${WORK}/trainrun/plots")
  message(FATAL_ERROR "--report-only wrote into a folder that is not a study")
endif()
expect_failure("is no folder" study --quick --report-only --out "${WORK}/typo/studdy")
if(EXISTS "${WORK}/typo")
  message(FATAL_ERROR "--report-only created a mistyped --out folder")
endif()

# configs/study.toml is the built-in default, key for key: against a study.json that records no
# setting, --report-only's refusal names every setting with its value ("KEY (absent before,
# VALUE now)"), and the two lists are the same.
file(MAKE_DIRECTORY "${WORK}/blank")
file(WRITE "${WORK}/blank/study.json" "{\"config\": {}}\n")
function(settings_refusal out_var)
  execute_process(COMMAND ${EXE} study --report-only --quiet ${ARGN} --out "${WORK}/blank"
                  RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT err MATCHES "other settings than these: .*stage0-steps \\(absent before")
    message(FATAL_ERROR "no refusal naming the settings (exit ${rc}):\n${err}")
  endif()
  set(${out_var} "${err}" PARENT_SCOPE)
endfunction()
settings_refusal(a)
settings_refusal(b --config "${CONFIGS}/study.toml")
expect_equal("configs/study.toml's settings against the defaults'" "${b}" "${a}")

# The report's command regenerates the study it describes: settings given on the command line
# are part of it (a TOML file's are in the file it names). The quick study's own values.
file(WRITE "${WORK}/quick.toml" "quick = true\n")
run_ok(out study --report-only --quiet --config "${WORK}/quick.toml" --stage1-steps 3
       --eval-lengths 128,256,512 --out "${dir}")
file(READ "${dir}/report.md" md)
string(FIND "${md}" "--config ${WORK}/quick.toml --quick --stage1-steps 3 --eval-lengths 128,256,512 --out ${dir}`" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the report's command lacks the command line's settings:\n${md}")
endif()

# Every other registered study in configs/ parses and is taken as written (a typo in a key
# would be refused here, not an hour into the run).
file(GLOB registered "${CONFIGS}/study-*.toml")
foreach(config ${registered})
  get_filename_component(name "${config}" NAME_WE)
  settings_refusal(err --config "${config}")
  file(STRINGS "${config}" line REGEX "^stage0-steps = ")
  string(REPLACE "stage0-steps = " "" steps "${line}")
  if(NOT err MATCHES "stage0-steps \\(absent before, ${steps} now\\)")
    message(FATAL_ERROR "${name}'s stage0-steps (${steps}) not taken as written:\n${err}")
  endif()
endforeach()

# A stage-1 run that diverges is a result: recorded (failed.json), said even with --quiet and
# naming the run, the other runs trained; a rerun does not train it again. --quiet prints no
# "starting a new run" line per run, and no option the study lacks (--skip-nonfinite) is offered.
set(diverge "${WORK}/diverge")
execute_process(COMMAND ${EXE} study --quick --stage1-lr 1e30 --variants full,anchor --quiet
                        --out "${diverge}" RESULT_VARIABLE rc ERROR_VARIABLE err)
expect_equal("a study with diverging runs: exit" "${rc}" "0")
if(NOT err MATCHES "study: full-s1 diverged in training: train: step [0-9]+: non-finite"
   OR err MATCHES "skip-nonfinite" OR err MATCHES "starting a new run")
  message(FATAL_ERROR "the divergence was not reported as the study's own:\n${err}")
endif()
if(NOT EXISTS "${diverge}/stage1/full-s1/failed.json")
  message(FATAL_ERROR "the diverged run left no failed.json")
endif()
file(READ "${diverge}/report.md" md)
if(NOT md MATCHES "Diverged in training [^\n]*full-s1" OR md MATCHES "Pending:")
  message(FATAL_ERROR "the report does not list the diverged run as such:\n${md}")
endif()
execute_process(COMMAND ${EXE} study --quick --stage1-lr 1e30 --variants full,anchor
                        --out "${diverge}" RESULT_VARIABLE rc ERROR_VARIABLE err)
expect_equal("the rerun of a study with a diverged run: exit" "${rc}" "0")
if(NOT err MATCHES "full-s1: diverged in training before" OR err MATCHES "full-s1: training")
  message(FATAL_ERROR "the rerun trained the diverged run again:\n${err}")
endif()
