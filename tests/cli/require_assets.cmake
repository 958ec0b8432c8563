# Included by the CLI test scripts: ASSETS comes from $MULTIBOOL_ASSETS when set (else as passed
# with -DASSETS), and multibool_require_assets(file...) ends the calling script with "SKIPPED:"
# (which CTest reports as skipped) when one of the files is missing. A macro, so that its
# return() leaves the script itself.
if(DEFINED ENV{MULTIBOOL_ASSETS} AND NOT "$ENV{MULTIBOOL_ASSETS}" STREQUAL "")
    set(ASSETS "$ENV{MULTIBOOL_ASSETS}")
endif()
macro(multibool_require_assets)
    foreach(file ${ARGN})
        if(NOT EXISTS "${ASSETS}/${file}")
            message("SKIPPED: ${ASSETS}/${file} not found; set MULTIBOOL_ASSETS to the folder holding it")
            return()
        endif()
    endforeach()
endmacro()
function(multibool_fresh_work_dir)
    file(REMOVE_RECURSE "${WORK_DIR}")
    file(MAKE_DIRECTORY "${WORK_DIR}")
endfunction()
function(multibool_write_excerpt asset bytes name)
    file(READ "${ASSETS}/${asset}" excerpt LIMIT ${bytes})
    file(WRITE "${WORK_DIR}/${name}" "${excerpt}")
endfunction()
# Runs the tool with the given arguments, requires its exit status, and sets the two variables
# to what it printed on stdout and stderr.
function(multibool_run_tool expected_status stdout_var stderr_var)
    execute_process(COMMAND ${TOOL} ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT "${status}" STREQUAL "${expected_status}")
        message(FATAL_ERROR "multibool-llama ${ARGN}: exit status ${status}, expected ${expected_status}\n${out}\n${err}")
    endif()
    set(${stdout_var} "${out}" PARENT_SCOPE)
    set(${stderr_var} "${err}" PARENT_SCOPE)
endfunction()
