cmake_minimum_required(VERSION 3.22)
# Data-parallel finetune under mpirun, on short excerpts of the shared texts:
#   CHECK=identical     one process, mpirun -np 2 (1 thread per rank) and mpirun -np 3
#                       --oversubscribe (2 threads per rank) write byte-identical checkpoints and
#                       print the same final perplexity; a run saved by 2 ranks and resumed by 3
#                       gives the same bytes again, and so do 3 ranks sharing a batch of 2.
#   CHECK=missing-file  one of two ranks is given a training text that does not exist: the job
#                       exits non-zero within the time limit (no rank waits for the failed one),
#                       with the error printed once.
#   cmake -DTOOL=... -DMPIEXEC=... -DASSETS=dir -DWORK_DIR=... -DCHECK=... -P finetune_mpi.cmake
include("${CMAKE_CURRENT_LIST_DIR}/require_assets.cmake")
multibool_require_assets(stories260K.bin tok512.bin tinystories-train.txt tinystories-valid.txt)
multibool_fresh_work_dir()
multibool_write_excerpt(tinystories-train.txt 20000 train.txt)
multibool_write_excerpt(tinystories-valid.txt 3000 valid.txt)
# CI runs as root, which Open MPI refuses unless told.
set(ENV{OMPI_ALLOW_RUN_AS_ROOT} 1)
set(ENV{OMPI_ALLOW_RUN_AS_ROOT_CONFIRM} 1)
set(files --model "${ASSETS}/stories260K.bin" --tokenizer "${ASSETS}/tok512.bin" --valid "${WORK_DIR}/valid.txt")
# 5 sequences: shares of 2 + 3 and 1 + 2 + 2; the last three written by the teacher, across a
# share boundary; float parameters train (the default), so their gradients are gathered too.
set(run --kernels 2 --init greedy --batch 5 --seq 64 --teacher-sequences 3 --eval-every 0)

# Runs `launcher... tool finetune args` with a time limit; sets out_var and err_var.
function(run_finetune expected_status out_var err_var)
    cmake_parse_arguments(RUN "" "" "LAUNCH;ARGS" ${ARGN})
    execute_process(COMMAND ${RUN_LAUNCH} ${TOOL} finetune ${RUN_ARGS} RESULT_VARIABLE status OUTPUT_VARIABLE out
                    ERROR_VARIABLE err TIMEOUT 300)
    if(NOT "${status}" STREQUAL "${expected_status}")
        message(FATAL_ERROR "${RUN_LAUNCH} finetune ${RUN_ARGS}: exit status ${status}, expected ${expected_status}\n"
                            "${out}\n${err}")
    endif()
    set(${out_var} "${out}" PARENT_SCOPE)
    set(${err_var} "${err}" PARENT_SCOPE)
endfunction()

function(expect_same_bytes reference file)
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${reference}" "${file}" RESULT_VARIABLE different)
    if(different)
        message(FATAL_ERROR "${file} differs from ${reference}")
    endif()
endfunction()

if(CHECK STREQUAL "identical")
    set(train --train "${WORK_DIR}/train.txt")
    run_finetune(0 out1 err1 ARGS ${files} ${train} ${run} --steps 4 --threads 1 --out "${WORK_DIR}/r1.ckpt")
    run_finetune(0 out2 err2 LAUNCH ${MPIEXEC} -np 2 ARGS ${files} ${train} ${run} --steps 4 --threads 1 --out
                 "${WORK_DIR}/r2.ckpt")
    if(NOT err2 MATCHES "data-parallel over 2 MPI ranks")
        message(FATAL_ERROR "mpirun -np 2 should run data-parallel:\n${err2}")
    endif()
    run_finetune(0 out3 err3 LAUNCH ${MPIEXEC} -np 3 --oversubscribe ARGS ${files} ${train} ${run} --steps 4
                 --threads 2 --out "${WORK_DIR}/r3.ckpt")
    expect_same_bytes("${WORK_DIR}/r1.ckpt" "${WORK_DIR}/r2.ckpt")
    expect_same_bytes("${WORK_DIR}/r1.ckpt" "${WORK_DIR}/r3.ckpt")
    foreach(out IN ITEMS "${out2}" "${out3}")
        if(NOT out STREQUAL out1)
            message(FATAL_ERROR "rank 0 alone prints the final perplexity, the same as one process's:\n"
                                "'${out1}'\n'${out}'")
        endif()
    endforeach()
    # Saved by 2 ranks at step 2, finished by 3.
    run_finetune(0 out err LAUNCH ${MPIEXEC} -np 2 ARGS ${files} ${train} ${run} --steps 2 --threads 1 --out
                 "${WORK_DIR}/resumed.ckpt")
    run_finetune(0 out err LAUNCH ${MPIEXEC} -np 3 --oversubscribe ARGS ${files} ${train} --threads 1 --resume
                 "${WORK_DIR}/resumed.ckpt" --steps 4)
    expect_same_bytes("${WORK_DIR}/r1.ckpt" "${WORK_DIR}/resumed.ckpt")
    # More ranks than sequences: one rank computes none.
    set(small --kernels 1 --init greedy --batch 2 --seq 32 --teacher-sequences 1 --eval-every 0 --steps 2 --threads 1)
    run_finetune(0 out err ARGS ${files} ${train} ${small} --out "${WORK_DIR}/small1.ckpt")
    run_finetune(0 out err LAUNCH ${MPIEXEC} -np 3 --oversubscribe ARGS ${files} ${train} ${small} --out
                 "${WORK_DIR}/small3.ckpt")
    expect_same_bytes("${WORK_DIR}/small1.ckpt" "${WORK_DIR}/small3.ckpt")
elseif(CHECK STREQUAL "missing-file")
    set(common ${files} ${run} --steps 4 --threads 1 --out "${WORK_DIR}/missing.ckpt")
    string(TIMESTAMP started "%s")
    run_finetune(1 out err LAUNCH ${MPIEXEC} -np 1 ${TOOL} finetune ${common} --train "${WORK_DIR}/train.txt" : -np 1
                 ARGS ${common} --train "${WORK_DIR}/no-such-text.txt")
    string(TIMESTAMP finished "%s")
    math(EXPR seconds "${finished} - ${started}")
    string(REGEX MATCHALL "no-such-text.txt: cannot open" messages "${err}")
    list(LENGTH messages count)
    if(NOT count EQUAL 1)
        message(FATAL_ERROR "the missing file should be reported once, found ${count} times:\n${err}")
    endif()
    if(seconds GREATER 60)
        message(FATAL_ERROR "the job took ${seconds} s to end after one rank failed")
    endif()
else()
    message(FATAL_ERROR "CHECK must be identical or missing-file, got '${CHECK}'")
endif()
