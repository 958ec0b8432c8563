# The multibool-llama command line: documented options, errors with a non-zero status, and the
# published figures on the shipped model (skipped when the assets are missing).
if(NOT TARGET multibool-llama)
    return()
endif()
set(cli_dir ${CMAKE_CURRENT_SOURCE_DIR}/cli)

# name, expected exit status, arguments separated by |, then NEEDS_ASSETS files and output regexes.
function(multibool_cli_test name status args)
    cmake_parse_arguments(PARSE_ARGV 3 cli "" "STDOUT_REGEX;STDERR_REGEX;STDOUT_LAST_LINE" "NEEDS_ASSETS")
    string(REPLACE ";" "|" needs_assets "${cli_NEEDS_ASSETS}")
    set(defines -DTOOL=$<TARGET_FILE:multibool-llama> "-DARGS=${args}" -DEXIT=${status} -DASSETS=${MULTIBOOL_ASSETS}
                "-DNEEDS_ASSETS=${needs_assets}")
    foreach(check STDOUT_REGEX STDERR_REGEX STDOUT_LAST_LINE)
        if(DEFINED cli_${check})
            list(APPEND defines "-D${check}=${cli_${check}}")
        endif()
    endforeach()
    add_test(NAME "cli: ${name}" COMMAND ${CMAKE_COMMAND} ${defines} -P ${cli_dir}/run_cli.cmake)
    set_tests_properties("cli: ${name}" PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED:")
endfunction()

multibool_cli_test("tool --help" 0 "--help" STDOUT_REGEX "perplexity.*generate.*quantize")
multibool_cli_test("perplexity --help" 0 "perplexity|--help"
    STDOUT_REGEX "--model M.*--tokenizer T.*--kernels K.*--bits B.*--group G.*--scales S.*--init I.*--iterations N.*--calibration F.*--calibration-tokens N.*--rtn B.*--text F.*--threads N")
multibool_cli_test("generate --help" 0 "generate|--help"
    STDOUT_REGEX "--model M.*--tokenizer T.*--kernels K.*--bits B.*--group G.*--scales S.*--init I.*--rtn B.*--prompt P.*--steps N.*--temperature X.*--seed S")
multibool_cli_test("quantize --help" 0 "quantize|--help"
    STDOUT_REGEX "--model M.*--kernels K.*--bits B.*--group G.*--scales S.*--init I.*--rtn B.*--out F")
multibool_cli_test("finetune --help" 0 "finetune|--help"
    STDOUT_REGEX "--model M.*--tokenizer T.*--train F.*--valid F.*--kernels K.*--group G.*--init I.*--policy P.*--train-kernels W.*--steps N.*--batch B.*--seq S.*--hidden-blocks L.*--threads N.*--eval-every N.*--save-every N.*--log F.*--out CKPT.*--resume CKPT")
# Defaults in the help come from the values the commands use.
multibool_cli_test("perplexity --help shows the defaults" 0 "perplexity|--help"
    STDOUT_REGEX "--group G +columns sharing one scale: 32, 64 or 128 \\(default 64\\).*--iterations N +alternating refinement rounds \\(default 10\\).*--calibration-tokens N +tokens of the calibration text used \\(default 32768\\)")
multibool_cli_test("generate --help shows the defaults" 0 "generate|--help"
    STDOUT_REGEX "--prompt P +text to continue \\(default: \"Once upon a time\"\\).*--steps N +[^(]*\\(default 256\\).*--temperature X +0 for greedy \\(default\\).*--seed S +[^(]*\\(default 42\\)")
multibool_cli_test("finetune --help shows the defaults" 0 "finetune|--help"
    STDOUT_REGEX "--kernels K +[^(]*\\(default 2\\).*--policy P +flip rule: bold \\(default\\) or expected-improvement \\(alias stochastic\\).*--steps N +total steps of the run \\(default 1800.*--batch B +sequences per step \\(default 8\\).*--seq S +tokens per sequence \\(default 256, or the model's context length when shorter\\).*--lr X +AdamW learning rate of the scales \\(default 3e-3\\).*--flip-rate X +the policy's eta \\(default: expected-improvement 5e-5, bold 2\\).*--float-lr X +[^(]*\\(default 3e-3\\).*--teacher-sequences N +[^\n]*\\(default: a quarter of --batch, 2 of 8\\).*--hidden X +gamma, weight of the hidden-state MSE \\(default 10\\).*--eval-every N +[^(]*\\(default 200.*--save-every N +[^(]*\\(default 50")
multibool_cli_test("no command" 2 "" STDERR_REGEX "usage: multibool-llama <command>")
multibool_cli_test("unknown option" 2 "perplexity|--colour|red"
    STDERR_REGEX "unknown option --colour for 'perplexity'.*multibool-llama perplexity --help")
multibool_cli_test("unsupported K and G" 2 "quantize|--kernels|5|--group|48|--out|unused.mbool"
    STDERR_REGEX "K=5, G=48 is not supported; supported: K in \\{1, 2, 3, 4\\} and G in \\{32, 64, 128\\}")
multibool_cli_test("negative count" 2 "generate|--steps|-1" STDERR_REGEX "--steps takes a whole number >= 0, found '-1'")
multibool_cli_test("zero threads" 2 "perplexity|--threads|0" STDERR_REGEX "--threads takes 1..256, found 0")
multibool_cli_test("non-finite temperature" 2 "generate|--temperature|nan"
    STDERR_REGEX "--temperature takes a finite number, found 'nan'")
multibool_cli_test("missing option value" 2 "generate|--prompt|--steps|8" STDERR_REGEX "option --prompt needs a value")
multibool_cli_test("repeated option" 2 "generate|--steps|8|--steps|9" STDERR_REGEX "option --steps given twice")
multibool_cli_test("group without kernels" 2 "perplexity|--group|64" STDERR_REGEX "--group, --scales and --init need --kernels, --bits, --rtn or --gptq")
multibool_cli_test("unknown initializer" 2 "perplexity|--kernels|2|--init|magic"
    STDERR_REGEX "--init takes greedy, alternating or act-aware, found 'magic'")
multibool_cli_test("two conversion modes" 2 "perplexity|--kernels|2|--bits|2.5" STDERR_REGEX "choose one of --kernels, --bits, --rtn and --gptq")
multibool_cli_test("row-column scales have no groups" 2 "perplexity|--kernels|2|--scales|rowcol|--group|64"
    STDERR_REGEX "--group does not apply to --scales rowcol")
multibool_cli_test("rtn bit range" 2 "perplexity|--rtn|9" STDERR_REGEX "--rtn takes 1..8 bits, found 9")
multibool_cli_test("baseline group of 0 columns" 2 "perplexity|--rtn|4|--group|0"
    STDERR_REGEX "--rtn needs a --group of at least 1 column")
multibool_cli_test("baseline with row-column scales" 2 "perplexity|--gptq|4|--scales|rowcol"
    STDERR_REGEX "--gptq has a scale per group; drop --scales rowcol")
multibool_cli_test("unknown allocation" 2 "perplexity|--bits|2.5|--allocation|fisher"
    STDERR_REGEX "--allocation takes kl or output-error, found 'fisher'")
multibool_cli_test("gptq bit range" 2 "perplexity|--gptq|0" STDERR_REGEX "--gptq takes 1..8 bits, found 0")
multibool_cli_test("rtn and gptq together" 2 "perplexity|--gptq|4|--rtn|4"
    STDERR_REGEX "choose one of --kernels, --bits, --rtn and --gptq")
# GPTQ 4-bit at G=64 within 2 % of an independent implementation's 7.78 (issue 16's table).
multibool_cli_test("GPTQ 4-bit G=64 matches an independent implementation" 0 "perplexity|--gptq|4|--group|64"
    NEEDS_ASSETS stories260K.bin tok512.bin tinystories-train.txt tinystories-valid.txt
    STDOUT_LAST_LINE "perplexity: 7\\.(6[2-9]|[78][0-9]|9[0-3])[0-9]* tokens: 45641")
multibool_cli_test("missing model" 1 "perplexity|--model|no-such-model.bin"
    STDERR_REGEX "error: no-such-model.bin: no such file")
multibool_cli_test("not a checkpoint" 1 "generate|--model|${cli_dir}/run_cli.cmake"
    STDERR_REGEX "error: .*run_cli.cmake: field '[a-z_]+': expected")
# finetune: option mistakes are usage errors (exit 2); those that need no model are found before
# any file is read, so a missing model does not hide them.
multibool_cli_test("finetune without a checkpoint path" 2 "finetune|--model|no-such-model.bin"
    STDERR_REGEX "give --out CKPT \\(or --resume CKPT\\)")
multibool_cli_test("finetune zero threads" 2 "finetune|--model|no-such-model.bin|--out|unused.ckpt|--threads|0"
    STDERR_REGEX "--threads takes 1..256, found 0")
multibool_cli_test("finetune resume fixes the run options" 2
    "finetune|--model|no-such-model.bin|--resume|no-such-run.ckpt|--kernels|2"
    STDERR_REGEX "--kernels is fixed by the checkpoint being resumed. drop it")
multibool_cli_test("finetune unsupported K and G" 2 "finetune|--model|no-such-model.bin|--out|unused.ckpt|--kernels|5"
    STDERR_REGEX "K=5, G=64 is not supported")
multibool_cli_test("finetune unknown initializer" 2 "finetune|--model|no-such-model.bin|--out|unused.ckpt|--init|magic"
    STDERR_REGEX "--init takes greedy, alternating or act-aware, found 'magic'")
multibool_cli_test("finetune missing model" 1 "finetune|--model|no-such-model.bin|--out|unused.ckpt"
    STDERR_REGEX "error: .*no-such-model.bin")
multibool_cli_test("finetune unknown policy" 2 "finetune|--model|no-such-model.bin|--out|unused.ckpt|--policy|foo"
    STDERR_REGEX "--policy takes bold or expected-improvement \\(alias stochastic\\), found 'foo'")
# The policy's name and its earlier name are both accepted: the run gets as far as reading the model.
foreach(policy bold expected-improvement stochastic)
    multibool_cli_test("finetune policy ${policy}" 1
        "finetune|--model|no-such-model.bin|--out|unused.ckpt|--policy|${policy}" STDERR_REGEX "error: .*no-such-model.bin")
endforeach()
multibool_cli_test("finetune unknown accumulator" 2
    "finetune|--model|no-such-model.bin|--out|unused.ckpt|--accumulator|double"
    STDERR_REGEX "--accumulator takes float, half or int8, found 'double'")
multibool_cli_test("finetune accumulator without BOLD" 2
    "finetune|--model|no-such-model.bin|--out|unused.ckpt|--policy|expected-improvement|--accumulator|half"
    STDERR_REGEX "--accumulator is BOLD's; --policy expected-improvement keeps no accumulator")
multibool_cli_test("finetune unknown schedule" 2 "finetune|--model|no-such-model.bin|--out|unused.ckpt|--lr-schedule|step"
    STDERR_REGEX "--lr-schedule takes constant, linear or cosine, found 'step'")
multibool_cli_test("finetune more teacher sequences than the batch" 2
    "finetune|--out|unused.ckpt|--batch|4|--teacher-sequences|5" NEEDS_ASSETS stories260K.bin
    STDERR_REGEX "the teacher writes at most the batch's 4 sequences, not 5")
multibool_cli_test("finetune unknown trained kernels" 2
    "finetune|--model|no-such-model.bin|--out|unused.ckpt|--train-kernels|some"
    STDERR_REGEX "--train-kernels takes last or all, found 'some'")
multibool_cli_test("finetune malformed hidden blocks" 2
    "finetune|--model|no-such-model.bin|--out|unused.ckpt|--hidden-blocks|0,x"
    STDERR_REGEX "--hidden-blocks takes all or block numbers separated by commas, found '0,x'")
# Numbers the training loop reads late are refused before the model is read (it does not exist here).
foreach(option steps eval-every save-every)
    multibool_cli_test("finetune malformed --${option}" 2
        "finetune|--model|no-such-model.bin|--out|unused.ckpt|--${option}|1e3"
        STDERR_REGEX "--${option} takes a whole number >= 0, found '1e3'")
endforeach()
multibool_cli_test("finetune of no steps" 2 "finetune|--model|no-such-model.bin|--out|unused.ckpt|--steps|0"
    STDERR_REGEX "--steps takes at least 1 for a new run")
# A budget below K=1 everywhere is refused from the model's shapes, before calibration and conversion.
multibool_cli_test("perplexity --bits below the least budget" 2 "perplexity|--bits|1.2"
    NEEDS_ASSETS stories260K.bin
    STDERR_REGEX "--bits: a budget of 1.200000 bits per weight is below 1\\.2[0-9]+, the least any allocation stores")
# The block range, --seq and the other ranges need the model (its layer count and seq_len).
foreach(blocks "0," "1,,2" ",0")
    multibool_cli_test("finetune hidden blocks '${blocks}'" 2
        "finetune|--model|no-such-model.bin|--out|unused.ckpt|--hidden-blocks|${blocks}"
        STDERR_REGEX "--hidden-blocks takes all or block numbers separated by commas, found '${blocks}'")
endforeach()
multibool_cli_test("finetune hidden block out of range" 2 "finetune|--out|unused.ckpt|--hidden-blocks|0,9"
    NEEDS_ASSETS stories260K.bin
    STDERR_REGEX "--hidden-blocks names block 9. the model has blocks 0\\.\\.4")
multibool_cli_test("finetune batch whose token count wraps" 2
    "finetune|--out|unused.ckpt|--batch|4611686018427387905|--seq|4" NEEDS_ASSETS stories260K.bin
    STDERR_REGEX "batch x seq = 4611686018427387905 x 4 tokens per step: their buffers do not fit in memory sizes")
multibool_cli_test("finetune batch beyond the machine's memory" 2
    "finetune|--out|unused.ckpt|--batch|100000000000|--seq|4" NEEDS_ASSETS stories260K.bin
    STDERR_REGEX "batch x seq = 100000000000 x 4 tokens per step need about [0-9]+ GiB of buffers. this machine has [0-9]+ GiB")
multibool_cli_test("finetune sequence longer than the model's" 2 "finetune|--out|unused.ckpt|--seq|513"
    NEEDS_ASSETS stories260K.bin
    STDERR_REGEX "seq must be 2\\.\\.512 .the model's seq_len., found 513")
multibool_cli_test("float perplexity matches the published figure" 0 "perplexity"
    NEEDS_ASSETS stories260K.bin tok512.bin tinystories-valid.txt
    STDOUT_LAST_LINE "perplexity: 7\\.24(7[6-9]|8[0-9]|9[0-6]) tokens: 45641")
multibool_cli_test("greedy generation matches llama2.c" 0 "generate|--steps|64"
    NEEDS_ASSETS stories260K.bin tok512.bin
    STDOUT_REGEX "^Once upon a time, there was a little girl named Lily\\. She loved to play outside in the park\\."
    STDERR_REGEX "tokens/s: [0-9.]+")
add_test(NAME "cli: converted model file"
    COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:multibool-llama> -DASSETS=${MULTIBOOL_ASSETS}
            -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-converted -P ${cli_dir}/converted_model.cmake)
set_tests_properties("cli: converted model file" PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED:")
add_test(NAME "cli: --bits allocation beats uniform K at its size"
    COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:multibool-llama> -DASSETS=${MULTIBOOL_ASSETS}
            -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-allocation -P ${cli_dir}/allocation.cmake)
set_tests_properties("cli: --bits allocation beats uniform K at its size" PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED:")
foreach(check resume corrupted)
    add_test(NAME "cli: finetune ${check}"
        COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:multibool-llama> -DASSETS=${MULTIBOOL_ASSETS} -DCHECK=${check}
                -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-finetune-${check} -P ${cli_dir}/finetune.cmake)
    set_tests_properties("cli: finetune ${check}" PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED:")
endforeach()
# Data-parallel fine-tuning, when multibool-llama is built with MPI (examples/CMakeLists.txt).
if(MULTIBOOL_MPI_FOUND)
    foreach(check identical missing-file)
        add_test(NAME "cli: finetune over MPI ${check}"
            COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:multibool-llama> -DMPIEXEC=${MPIEXEC_EXECUTABLE}
                    -DASSETS=${MULTIBOOL_ASSETS} -DCHECK=${check}
                    -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-finetune-mpi-${check} -P ${cli_dir}/finetune_mpi.cmake)
        set_tests_properties("cli: finetune over MPI ${check}" PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED:")
    endforeach()
endif()

# GGUF files: llama.cpp's own conversion of stories260K reproduces llama.cpp's perplexity (6.1632
# with -c 256, gguf/README.md) within 0.05 %, and the checkpoint's figures and text.
set(f32_gguf "@ASSETS@/gguf/stories260K-f32.gguf")
multibool_cli_test("GGUF: llama.cpp's perplexity protocol matches llama-perplexity -c 256" 0
    "perplexity|--model|${f32_gguf}|--protocol|llama.cpp|--ctx|256"
    NEEDS_ASSETS gguf/stories260K-f32.gguf tinystories-valid.txt
    STDOUT_LAST_LINE "perplexity: 6\\.16(0[1-9]|[1-5][0-9]|6[0-2]) tokens: 22606")
multibool_cli_test("GGUF: the assets protocol gives the checkpoint's figure" 0 "perplexity|--model|${f32_gguf}"
    NEEDS_ASSETS gguf/stories260K-f32.gguf tinystories-valid.txt
    STDOUT_LAST_LINE "perplexity: 7\\.2486 tokens: 45641")
# Calibrated conversion reads 256-token chunks past the GGUF's stated context of 128; the figure is
# the checkpoint's (the same weights, and the GGUF vocabulary gives llama2.c's ids on the text). The
# figure itself depends on the CPU's float arithmetic (35.3712 on Zen 5, 35.3918 on Zen 4), so the
# two conversions are compared in one run.
add_test(NAME "cli: GGUF: act-aware K=2 conversion gives the checkpoint's figure"
    COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:multibool-llama> -DASSETS=${MULTIBOOL_ASSETS}
            "-DFIRST=perplexity|--model|${f32_gguf}|--kernels|2|--group|64"
            "-DSECOND=perplexity|--model|@ASSETS@/stories260K.bin|--kernels|2|--group|64"
            "-DLAST_LINE=perplexity: [0-9]+\\.[0-9]+ tokens: 45641"
            "-DNEEDS_ASSETS=gguf/stories260K-f32.gguf|stories260K.bin|tok512.bin|tinystories-valid.txt|tinystories-train.txt"
            -P ${cli_dir}/same_result.cmake)
set_tests_properties("cli: GGUF: act-aware K=2 conversion gives the checkpoint's figure" PROPERTIES
    SKIP_REGULAR_EXPRESSION "SKIPPED:")
multibool_cli_test("GGUF: greedy generation matches llama2.c" 0 "generate|--model|${f32_gguf}|--steps|64"
    NEEDS_ASSETS gguf/stories260K-f32.gguf
    STDOUT_REGEX "^Once upon a time, there was a little girl named Lily\\. She loved to play outside in the park\\.")
multibool_cli_test("GGUF: an F16 file runs" 0
    "perplexity|--model|@ASSETS@/gguf/stories260K-f16.gguf|--protocol|llama.cpp|--ctx|256"
    NEEDS_ASSETS gguf/stories260K-f16.gguf tinystories-valid.txt
    STDOUT_LAST_LINE "perplexity: 6\\.1[56][0-9]+ tokens: 22606")
multibool_cli_test("tokenize: GPT-2's vocabulary, one id per line" 0
    "tokenize|--tokenizer|@ASSETS@/gguf/ggml-vocab-gpt-2.gguf|--text|Hello world"
    NEEDS_ASSETS gguf/ggml-vocab-gpt-2.gguf STDOUT_REGEX "^15496\n995\n$")
multibool_cli_test("tokenize: a GGUF model's vocabulary, with BOS" 0 "tokenize|--model|${f32_gguf}|--text|Once upon a time|--bos"
    NEEDS_ASSETS gguf/stories260K-f32.gguf STDOUT_REGEX "^1\n")
multibool_cli_test("tokenize needs a vocabulary" 2 "tokenize|--text|x" STDERR_REGEX "give --model or --tokenizer")
multibool_cli_test("tokenize: a llama2.c checkpoint holds no vocabulary" 2 "tokenize|--model|@ASSETS@/stories260K.bin|--text|x"
    NEEDS_ASSETS stories260K.bin STDERR_REGEX "is not a GGUF file, which would hold its vocabulary: give --tokenizer")
multibool_cli_test("generate: steps beyond any context" 2 "generate|--steps|2000000"
    STDERR_REGEX "--steps takes 1..1048576, found 2000000")
multibool_cli_test("GGUF: another architecture is refused by name" 1 "perplexity|--model|@ASSETS@/gguf/ggml-vocab-gpt-2.gguf"
    NEEDS_ASSETS gguf/ggml-vocab-gpt-2.gguf STDERR_REGEX "general.architecture': expected \"llama\".*found \"gpt2\"")
multibool_cli_test("GGUF: a vocabulary-only file is not a model" 1 "generate|--model|@ASSETS@/gguf/ggml-vocab-llama-spm.gguf"
    NEEDS_ASSETS gguf/ggml-vocab-llama-spm.gguf STDERR_REGEX "vocabulary-only file: give it as --tokenizer")
multibool_cli_test("GGUF: Q1_0 needs inputs in whole 128-blocks" 1
    "quantize|--model|${f32_gguf}|--kernels|1|--group|128|--out|unused.gguf"
    NEEDS_ASSETS gguf/stories260K-f32.gguf STDERR_REGEX "wq .attn_q. has 64 inputs, not a multiple of Q1_0's block of 128")
multibool_cli_test("GGUF: writing one needs a GGUF source" 2 "quantize|--kernels|1|--group|128|--out|unused.gguf"
    NEEDS_ASSETS stories260K.bin STDERR_REGEX "copies the metadata and vocabulary of a GGUF --model")
multibool_cli_test("unknown protocol" 2 "perplexity|--protocol|lm-eval" STDERR_REGEX "--protocol takes assets or llama.cpp, found 'lm-eval'")
multibool_cli_test("ctx needs the llama.cpp protocol" 2 "perplexity|--ctx|256" STDERR_REGEX "--ctx applies to --protocol llama.cpp")
add_test(NAME "cli: GGUF Q1_0 export"
    COMMAND ${CMAKE_COMMAND} -DTOOL=$<TARGET_FILE:multibool-llama> -DMAKE_GGUF=$<TARGET_FILE:multibool-make-llama-gguf>
            -DASSETS=${MULTIBOOL_ASSETS} -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cli-gguf -P ${cli_dir}/gguf_q1_0.cmake)
set_tests_properties("cli: GGUF Q1_0 export" PROPERTIES SKIP_REGULAR_EXPRESSION "SKIPPED:")
