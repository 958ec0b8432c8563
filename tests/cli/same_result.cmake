cmake_minimum_required(VERSION 3.22)
# Runs multibool-llama on two command lines and requires the same last line of stdout from both:
# for results that must agree exactly on any machine, although their value depends on the machine's
# float arithmetic (an act-aware conversion's closed-form solves, say).
#   cmake -DTOOL=... -DFIRST="a|b" -DSECOND="a|c" -DLAST_LINE=regex -DASSETS=dir [-DNEEDS_ASSETS=file|file]
#         -P same_result.cmake
# LAST_LINE is what the shared line must look like (so that two equally wrong runs fail).
include("${CMAKE_CURRENT_LIST_DIR}/require_assets.cmake")
string(REPLACE "|" ";" NEEDS_ASSETS "${NEEDS_ASSETS}")
multibool_require_assets(${NEEDS_ASSETS})

# Sets <prefix>_line to the last line of stdout of a successful run.
function(last_line prefix args)
    string(REPLACE "@ASSETS@" "${ASSETS}" args "${args}")
    string(REPLACE "|" ";" args "${args}")
    multibool_run_tool(0 out err ${args})
    string(REGEX REPLACE "\n$" "" out "${out}")
    string(REGEX MATCH "[^\n]*$" line "${out}")
    message("multibool-llama ${args}\n  -> ${line}")
    set(${prefix}_line "${line}" PARENT_SCOPE)
endfunction()

last_line(first "${FIRST}")
last_line(second "${SECOND}")
if(NOT first_line STREQUAL second_line)
    message(FATAL_ERROR "the two runs differ: '${first_line}' and '${second_line}'")
endif()
if(NOT first_line MATCHES "^${LAST_LINE}$")
    message(FATAL_ERROR "both runs print '${first_line}', which does not match '${LAST_LINE}'")
endif()
