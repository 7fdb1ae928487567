# `anchorctx convert llama2c` then `anchorctx convert to-llama2c` on the real stories260K model
# (run by CTest): the exported checkpoint has llama2.c's size and header and the same weights
# (the weights are checked byte for byte in tests/model/llama2c_export_test.cpp; here the
# exported file is imported again and must give the same model folder weights), and the
# command's errors.
#   cmake -DEXE=/path/to/anchorctx -DDATA=/path/to/shared/data -DWORK=/tmp/dir -P llama2c_export_cli.cmake
# Skips (CTest's SKIP_REGULAR_EXPRESSION "skipped:") when ../shared/data is absent.
cmake_minimum_required(VERSION 3.25)
include(${CMAKE_CURRENT_LIST_DIR}/cli_checks.cmake)
require_variables(EXE DATA WORK)

stories260k_or_skip()

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(model "${WORK}/stories260K")
set(exported "${WORK}/stories260K.bin")
run_ok(out convert llama2c --checkpoint "${checkpoint}" --tokenizer "${tokenizer}" --out "${model}")
run_ok(out convert to-llama2c --model "${model}" --out "${exported}" --json)

file(SIZE "${checkpoint}" want_size)
file(SIZE "${exported}" got_size)
expect_equal("exported size" "${got_size}" "${want_size}")
string(JSON bytes GET "${out}" bytes)
expect_equal("--json bytes" "${bytes}" "${want_size}")
foreach(key_value "dim;64" "hidden_dim;172" "n_layers;5" "n_heads;8" "n_kv_heads;4"
                  "vocab_size;512" "seq_len;512" "shared_classifier;ON")
  list(GET key_value 0 key)
  list(GET key_value 1 want)
  string(JSON got GET "${out}" ${key})
  if(key STREQUAL "shared_classifier")
    if(got)
      set(got ON)
    endif()
  endif()
  expect_equal("--json ${key}" "${got}" "${want}")
endforeach()

# Header and weights (everything before the RoPE tables, 1,040,156 bytes) are llama2.c's own;
# the tables, which run.c never reads, may differ in the last bit of a few floats (torch's
# float32 cos/sin), so they are left out of the byte comparison.
set(weights_bytes 1040156)
file(READ "${checkpoint}" want_hex LIMIT ${weights_bytes} HEX)
file(READ "${exported}" got_hex LIMIT ${weights_bytes} HEX)
if(NOT got_hex STREQUAL want_hex)
  message(FATAL_ERROR "the header or weights of ${exported} differ from ${checkpoint}")
endif()

# The exported file imports again into the same safetensors.
run_ok(out convert llama2c --checkpoint "${exported}" --tokenizer "${tokenizer}"
       --out "${WORK}/again")
file(SHA256 "${model}/model.safetensors" want_hash)
file(SHA256 "${WORK}/again/model.safetensors" got_hash)
expect_equal("model.safetensors after a round trip" "${got_hash}" "${want_hash}")

# Failures: an existing --out (1, unless --force), a model llama2.c cannot hold (1, named), a
# missing model (1), a missing option (2).
expect_failure("exists" convert to-llama2c --model "${model}" --out "${exported}")
run_ok(out convert to-llama2c --model "${model}" --out "${exported}" --force)
file(READ "${model}/config.json" config)
string(REPLACE "\"rope_theta\": 10000.0" "\"rope_theta\": 500000.0" config "${config}")
string(REPLACE "\"rms_norm_eps\": 1e-05" "\"rms_norm_eps\": 1e-06" config "${config}")
file(MAKE_DIRECTORY "${WORK}/theta")
file(WRITE "${WORK}/theta/config.json" "${config}")
expect_failure("anchorctx: error: .*cannot be written as a llama2.c checkpoint.*rope_theta 500000.*rms_norm_eps 1e-06"
               convert to-llama2c --model "${WORK}/theta" --out "${WORK}/theta.bin")
if(EXISTS "${WORK}/theta.bin")
  message(FATAL_ERROR "a refused export left ${WORK}/theta.bin")
endif()
expect_failure("anchorctx: error:" convert to-llama2c --model "${WORK}/no-such-model"
               --out "${WORK}/x.bin")
execute_process(COMMAND ${EXE} convert to-llama2c --model "${model}" RESULT_VARIABLE rc
                OUTPUT_QUIET ERROR_QUIET)
expect_equal("exit code without --out" "${rc}" "2")
file(REMOVE_RECURSE "${WORK}")
