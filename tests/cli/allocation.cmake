cmake_minimum_required(VERSION 3.22)
# --bits at uniform K=2's size: the default (KL-weighted) allocation stays within the budget and
# scores below uniform K=2, which an allocation is for (issue 16).
#   cmake -DTOOL=... -DASSETS=dir -DWORK_DIR=... -P allocation.cmake
include("${CMAKE_CURRENT_LIST_DIR}/require_assets.cmake")
multibool_require_assets(stories260K.bin tok512.bin tinystories-train.txt tinystories-valid.txt)
multibool_fresh_work_dir()
# A 12 KB excerpt keeps the scoring short; the allocation is calibrated on the training text as usual.
multibool_write_excerpt(tinystories-valid.txt 12000 excerpt.txt)
set(common --model "${ASSETS}/stories260K.bin" --tokenizer "${ASSETS}/tok512.bin" --text "${WORK_DIR}/excerpt.txt"
           --threads 2)

# Sets <prefix>_perplexity and <prefix>_bits from one run.
function(score prefix)
    execute_process(COMMAND ${TOOL} perplexity ${common} ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out
                    ERROR_VARIABLE err)
    if(NOT status EQUAL 0)
        message(FATAL_ERROR "multibool-llama perplexity ${ARGN}: exit status ${status}\n${out}\n${err}")
    endif()
    if(NOT out MATCHES "perplexity: ([0-9.]+) tokens" OR NOT err MATCHES "\\), ([0-9.]+) bits/weight")
        message(FATAL_ERROR "perplexity ${ARGN} printed no perplexity or bits/weight:\n${out}\n${err}")
    endif()
    string(REGEX MATCH "perplexity: ([0-9.]+) tokens" unused "${out}")
    set(${prefix}_perplexity "${CMAKE_MATCH_1}" PARENT_SCOPE)
    string(REGEX MATCH "\\), ([0-9.]+) bits/weight" unused "${err}")
    set(${prefix}_bits "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

score(uniform --kernels 2)
score(budget --bits ${uniform_bits})
message("uniform K=2: ${uniform_perplexity} at ${uniform_bits} bits/weight; "
        "--bits ${uniform_bits}: ${budget_perplexity} at ${budget_bits}")
if(budget_bits GREATER uniform_bits)
    message(FATAL_ERROR "--bits ${uniform_bits} stored ${budget_bits} bits/weight, over its budget")
endif()
if(NOT budget_perplexity LESS uniform_perplexity)
    message(FATAL_ERROR "--bits ${uniform_bits} (${budget_perplexity}) should score below uniform K=2 "
                        "(${uniform_perplexity}) at the same size")
endif()
