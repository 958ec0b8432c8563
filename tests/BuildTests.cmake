# Tests of the build itself: static_assert messages, the README snippet, and consumer projects.

# Each invalid parameter set must fail to compile with a message that says what is wrong.
set(compile_fail_cases
    "0|"
    "1|K \\(the number of Boolean kernels\\) must be at least 1"
    "2|K \\(the number of Boolean kernels\\) must be at most 8"
    "3|Word must be an unsigned integer type"
    "4|Word must be an unsigned integer type"
    "5|Scale must be float, double, multibool::half or multibool::bfloat16")
foreach(entry IN LISTS compile_fail_cases)
    string(REPLACE "|" ";" parts "${entry}")
    list(GET parts 0 case_number)
    list(LENGTH parts part_count)
    add_test(NAME "compile_fail: case ${case_number}"
        COMMAND ${CMAKE_CXX_COMPILER} -std=c++20 -fsyntax-only -I${PROJECT_SOURCE_DIR}/include
                -DMULTIBOOL_CASE=${case_number} ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/bad_parameters.cpp)
    if(part_count GREATER 1)
        list(GET parts 1 expected_message)
        set_tests_properties("compile_fail: case ${case_number}" PROPERTIES PASS_REGULAR_EXPRESSION "${expected_message}")
    endif()
endforeach()

# The README's usage snippet, compiled and run exactly as the README shows it.
set(readme ${PROJECT_SOURCE_DIR}/README.md)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${readme})
file(READ ${readme} readme_text)
string(FIND "${readme_text}" "<!-- usage-snippet -->" marker)
if(marker EQUAL -1)
    message(FATAL_ERROR "README.md has no <!-- usage-snippet --> marker before its usage example")
endif()
string(SUBSTRING "${readme_text}" ${marker} -1 readme_tail)
string(REPLACE "\r\n" "\n" readme_tail "${readme_tail}")
string(FIND "${readme_tail}" "```cpp\n" fence_open)
if(fence_open EQUAL -1)
    message(FATAL_ERROR "README.md: no ```cpp block after <!-- usage-snippet -->")
endif()
math(EXPR code_begin "${fence_open} + 7")
string(SUBSTRING "${readme_tail}" ${code_begin} -1 readme_tail)
string(FIND "${readme_tail}" "```" fence_close)
if(fence_close EQUAL -1)
    message(FATAL_ERROR "README.md: the usage snippet's ```cpp block is not closed")
endif()
string(SUBSTRING "${readme_tail}" 0 ${fence_close} snippet)
# Rewritten only when the README changed, so that a reconfigure does not rebuild it.
set(snippet_file ${CMAKE_CURRENT_BINARY_DIR}/readme_snippet.cpp)
if(EXISTS ${snippet_file})
    file(READ ${snippet_file} previous_snippet)
endif()
if(NOT "${previous_snippet}" STREQUAL "${snippet}")
    file(WRITE ${snippet_file} "${snippet}")
endif()
add_executable(readme_snippet ${snippet_file})
target_link_libraries(readme_snippet PRIVATE multibool_development)
add_test(NAME "readme: usage snippet" COMMAND readme_snippet)
set_tests_properties("readme: usage snippet" PROPERTIES PASS_REGULAR_EXPRESSION "reload identical")

foreach(mode installed subdirectory)
    add_test(NAME "consumer: ${mode}"
        COMMAND ${CMAKE_COMMAND} -DMODE=${mode} -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DBUILD_DIR=${PROJECT_BINARY_DIR}
                -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/consumer-${mode} -DGENERATOR=${CMAKE_GENERATOR}
                -DCXX=${CMAKE_CXX_COMPILER} -P ${CMAKE_CURRENT_SOURCE_DIR}/consumer/run_consumer.cmake)
endforeach()

# The examples without Highway: this repository configured with Highway off and multibool-llama
# built, so that the examples' backends (ExactBackend, DefaultBackend) fall back to xsimd or scalar.
# A whole build of the tool: minutes, so labelled to be run or skipped by label.
add_test(NAME "build: multibool-llama without Highway"
    COMMAND ${CMAKE_COMMAND} -DSOURCE_DIR=${PROJECT_SOURCE_DIR} -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/without-highway
            -DGENERATOR=${CMAKE_GENERATOR} -DCXX=${CMAKE_CXX_COMPILER} -DBUILD_TYPE=${CMAKE_BUILD_TYPE}
            -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/build_without_highway.cmake)
set_tests_properties("build: multibool-llama without Highway" PROPERTIES LABELS "build;slow" TIMEOUT 3600)
