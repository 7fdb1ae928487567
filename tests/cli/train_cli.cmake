# `anchorctx demo`, `train` (flags and a TOML config, resume, refusals), `generate` on the trained
# model and `bench train`, end to end on small sizes (run by CTest):
#   cmake -DEXE=/path/to/anchorctx -DWORK=/tmp/dir -P train_cli.cmake
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE WORK)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

# The demo, small: every promised key, a model folder, a report, the loss falling.
run_ok(demo demo --out "${WORK}/demo" --steps 12 --documents 200 --seq-len 256
       --batch-windows 2 --quiet --json)
require_keys("${demo}" loss_first loss_last steps tokens_per_s anchor_step_ms full_step_ms
             model_dir)
string(JSON first GET "${demo}" loss_first)
string(JSON last GET "${demo}" loss_last)
if(NOT last LESS first)
  message(FATAL_ERROR "demo: the loss did not fall (${first} -> ${last})")
endif()
foreach(f model/config.json model/model.safetensors report.md data/meta.json)
  if(NOT EXISTS "${WORK}/demo/${f}")
    message(FATAL_ERROR "demo left no ${f}")
  endif()
endforeach()
# The bf16 GEMM mode (native where the CPU has AVX512_BF16) is reported and recorded with the
# run's options; --bf16-compute emulated is honoured.
string(JSON compute GET "${demo}" bf16_compute)
file(READ "${WORK}/demo/run/checkpoints/step-000012/trainer_state.json" state)
string(JSON recorded GET "${state}" options bf16-compute)
expect_equal("demo bf16-compute recorded" "${recorded}" "${compute}")
# Rerunning replaces the demo's own folder; a foreign folder is refused.
run_ok(again demo --out "${WORK}/demo" --steps 2 --documents 100 --seq-len 128 --quiet --json
       --bf16-compute emulated)
string(JSON compute GET "${again}" bf16_compute)
expect_equal("demo --bf16-compute emulated" "${compute}" "emulated")
file(READ "${WORK}/demo/run/checkpoints/step-000002/trainer_state.json" state)
string(JSON recorded GET "${state}" options bf16-compute)
expect_equal("demo emulated recorded" "${recorded}" "emulated")
file(MAKE_DIRECTORY "${WORK}/foreign")
expect_failure("not made by anchorctx demo" demo --out "${WORK}/foreign" --quiet)
# A bad option is refused before the previous demo's folder is touched (it was emptied first).
expect_failure("--steps: Value 0 not in range" demo --out "${WORK}/demo" --steps 0 --quiet)
if(NOT EXISTS "${WORK}/demo/report.md" OR NOT EXISTS "${WORK}/demo/model/config.json")
  message(FATAL_ERROR "demo --steps 0 removed the previous demo's files")
endif()
# A file of the user's inside the demo's model/ is never deleted by a rerun (the sub-folders were
# removed whole): the rerun is refused naming it, and the file stays.
file(WRITE "${WORK}/demo/model/NOTES.md" "mine\n")
expect_failure("holds 'model/NOTES.md', which the demo did not write"
               demo --out "${WORK}/demo" --steps 2 --documents 100 --seq-len 128 --quiet)
if(NOT EXISTS "${WORK}/demo/model/NOTES.md" OR NOT EXISTS "${WORK}/demo/report.md")
  message(FATAL_ERROR "a refused demo rerun removed files")
endif()
file(REMOVE "${WORK}/demo/model/NOTES.md")

# The trained model generates with the byte tokenizer.
run_ok(text generate --model "${WORK}/demo/model" --tokenizer byte --prompt "The "
       --max-new-tokens 8 --temperature 0)

# --init-from a model folder: its weights start the run, and its generation_config.json goes
# with every checkpoint (transformers keeps it on save; it used to be left behind).
file(WRITE "${WORK}/demo/model/generation_config.json" "{\"eos_token_id\": 257}\n")
run_ok(from_model train --init-from "${WORK}/demo/model" --data "${WORK}/demo/data"
       --out "${WORK}/run_init" --steps 1 --quiet --json)
file(READ "${WORK}/run_init/checkpoints/step-000001/generation_config.json" generation)
string(JSON eos GET "${generation}" eos_token_id)
expect_equal("generation_config.json copied from --init-from" "${eos}" "257")
file(REMOVE "${WORK}/demo/model/generation_config.json")

# train from a TOML config (the command line adds to it), then resume to more steps.
file(WRITE "${WORK}/train.toml" "preset = \"tiny\"\nsteps = 3\nlr = 0.002\nwarmup-steps = 1\n")
run_ok(trained train --config "${WORK}/train.toml" --data "${WORK}/demo/data"
       --out "${WORK}/run" --save-every 2 --quiet --json)
require_keys("${trained}" steps loss_first loss_last tokens_per_s checkpoint)
string(JSON steps GET "${trained}" steps)
expect_equal("train steps" "${steps}" "3")
foreach(f checkpoints/step-000003/config.json checkpoints/step-000003/model.safetensors
          checkpoints/step-000003/optimizer.safetensors checkpoints/step-000003/trainer_state.json
          metrics.jsonl)
  if(NOT EXISTS "${WORK}/run/${f}")
    message(FATAL_ERROR "train left no ${f}")
  endif()
endforeach()
expect_failure("already holds checkpoints" train --config "${WORK}/train.toml"
               --data "${WORK}/demo/data" --out "${WORK}/run" --quiet)
run_ok(resumed train --config "${WORK}/train.toml" --data "${WORK}/demo/data"
       --out "${WORK}/run" --steps 5 --resume --quiet --json)
string(JSON steps GET "${resumed}" steps)
expect_equal("resumed steps" "${steps}" "5")

# Refusals: usage errors exit 2, bad input names what is wrong.
expect_failure("--precision" train --data "${WORK}/demo/data" --out "${WORK}/r2" --preset tiny
               --precision fp16)
expect_failure("exactly one of --preset" train --data "${WORK}/demo/data" --out "${WORK}/r3")
expect_failure("meta.json|missing|no such" train --data "${WORK}/nothing" --out "${WORK}/r4"
               --preset tiny)
expect_failure("does not run with rope mode" train --data "${WORK}/demo/data" --out "${WORK}/r5"
               --preset tiny --precision fp32 --rope-mode hf_bf16)

# bench train, small.
run_ok(bench bench train --preset tiny --seq-len 256 --steps 1 --warmup 0 --json)
require_keys("${bench}" step_ms tokens_per_s mfu sgemm_gflops peak_rss_mb cpu)
run_ok(bench32 bench train --preset tiny --seq-len 64 --steps 1 --warmup 0 --precision fp32 --json)
string(JSON type TYPE "${bench32}" bf16_compute)  # no bf16 computed: null, as train records it
expect_equal("bench train fp32: bf16_compute" "${type}" "NULL")
# A negative warm-up took timed steps away (--warmup -5 with --steps 1 timed none).
expect_failure("--warmup: Value -5 not in range 0" bench train --preset tiny --seq-len 64
               --steps 1 --warmup -5)
# --profile: time per kind of operation (wall and CPU), the GEMMs among them.
run_ok(bench bench train --preset tiny --seq-len 256 --steps 1 --warmup 0 --profile --json)
require_keys("${bench}" step_ms step_cpu_ms profile_ms_per_step)
string(JSON gemm_ms GET "${bench}" profile_ms_per_step wall gemm)
string(JSON gemm_cpu_ms GET "${bench}" profile_ms_per_step cpu gemm)
if(NOT gemm_ms GREATER 0 OR NOT gemm_cpu_ms GREATER 0)
  message(FATAL_ERROR "bench train --profile: no GEMM time (${gemm_ms} ms, CPU ${gemm_cpu_ms} ms)")
endif()
