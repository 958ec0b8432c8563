cmake_minimum_required(VERSION 3.22)
# Runs multibool-llama once and checks its exit status and output:
#   cmake -DTOOL=... -DARGS="a|b" -DEXIT=0 [-DSTDOUT_LAST_LINE=regex] [-DSTDOUT_REGEX=regex]
#         [-DSTDERR_REGEX=regex] [-DNEEDS_ASSETS=file|file] -DASSETS=dir -P run_cli.cmake
# ARGS separates arguments with '|' (a ';' list would be split by add_test).
# Prints "SKIPPED:" (which CTest reports as skipped) when a needed asset is missing.
include("${CMAKE_CURRENT_LIST_DIR}/require_assets.cmake")
string(REPLACE "|" ";" NEEDS_ASSETS "${NEEDS_ASSETS}")
multibool_require_assets(${NEEDS_ASSETS})
# "@ASSETS@" in an argument stands for the assets folder (as $MULTIBOOL_ASSETS may override it).
string(REPLACE "@ASSETS@" "${ASSETS}" ARGS "${ARGS}")
string(REPLACE "|" ";" ARGS "${ARGS}")
execute_process(COMMAND ${TOOL} ${ARGS} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(report "multibool-llama ${ARGS}\nexit status: ${status}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
if(NOT "${status}" STREQUAL "${EXIT}")
    message(FATAL_ERROR "expected exit status ${EXIT}\n${report}")
endif()
if(DEFINED STDOUT_REGEX AND NOT out MATCHES "${STDOUT_REGEX}")
    message(FATAL_ERROR "stdout does not match '${STDOUT_REGEX}'\n${report}")
endif()
if(DEFINED STDERR_REGEX AND NOT err MATCHES "${STDERR_REGEX}")
    message(FATAL_ERROR "stderr does not match '${STDERR_REGEX}'\n${report}")
endif()
if(DEFINED STDOUT_LAST_LINE)
    string(REGEX REPLACE "\n$" "" trimmed "${out}")
    string(REGEX MATCH "[^\n]*$" last "${trimmed}")
    if(NOT last MATCHES "^${STDOUT_LAST_LINE}$")
        message(FATAL_ERROR "the last line of stdout, '${last}', does not match '${STDOUT_LAST_LINE}'\n${report}")
    endif()
endif()
message("${report}")
